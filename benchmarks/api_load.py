"""API latency under load while Temporal is healthy, down or black-holed (issue 14, item 4).

Runs the real `portal-domains serve` (uvicorn, PostgreSQL) as a subprocess per
scenario and drives it with concurrent POSTs (each a new tenant's domain
request) while a few clients keep GETting. Scenarios, all in one run:

- `no workflows`: PORTAL_DOMAINS_START_WORKFLOWS=off, the floor (the API and the
  database alone, nothing queued or delivered);
- `healthy`: the outbox on, Temporal dev server up;
- `down`: the outbox on, Temporal's address a closed port;
- `black-holed`: the outbox on, Temporal's address a port that accepts and
  never answers.

Usage: python -m benchmarks.api_load [--requests 200] [--concurrency 45] [--json]
Prints a Markdown table (p50/p99/max per scenario for POST and GET, errors, and
what the outbox held or delivered afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt

from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory
from loopback.temporal import free_port, temporal_dev_server, wait_for_port
from tests.support.network import black_hole, closed_port
from tests.support.services import create_database, postgres_server

AUDIENCE = "portal-domains-bench"
ISSUER = "https://issuer.bench"
DOMAIN_PATH = "/api/settings/client-portal/domain"


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    single_p50_ms: float  # one POST at a time (no queueing in the server)
    single_max_ms: float
    posts: int
    post_p50_ms: float
    post_p99_ms: float
    post_max_ms: float
    gets: int
    get_p50_ms: float
    get_p99_ms: float
    get_max_ms: float
    errors: int
    queued_after: int  # signals still in the outbox when the load ended
    drained_in_s: float | None  # healthy: until every signal was delivered


def _token(key: str, tenant: uuid.UUID) -> str:
    now = datetime.now(UTC)
    return jwt.encode(
        {
            "sub": f"bench-{tenant.hex[:8]}",
            "role": "tenant_admin",
            "tenant_id": str(tenant),
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=10)).timestamp()),
        },
        key,
        algorithm="HS256",
    )


@contextmanager
def serve(database_url: str, temporal: str, workflows: bool, home: Path, key: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PORTAL_DOMAINS_HOME": str(home),
        "PORTAL_DOMAINS_DATABASE_URL": database_url,
        "PORTAL_DOMAINS_TEMPORAL_ADDRESS": temporal,
        "PORTAL_DOMAINS_TASK_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",  # no worker polls it
        "PORTAL_DOMAINS_START_WORKFLOWS": "on" if workflows else "off",
        "PORTAL_DOMAINS_JWT_KEY": key,
        "PORTAL_DOMAINS_JWT_AUDIENCE": AUDIENCE,
        "PORTAL_DOMAINS_JWT_ISSUER": ISSUER,
        "PORTAL_DOMAINS_API_RATE_LIMIT": "10000",
        "PORTAL_DOMAINS_EDITION": "enterprise",
    }
    exe = str(Path(sys.executable).with_name("portal-domains"))
    log = home / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [exe, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_for_port(port, 60, proc)
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"{err}: {log.read_text()[-2000:]}") from err
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def load(
    base_url: str, key: str, requests: int, concurrency: int
) -> tuple[list[float], list[float], list[float], int]:
    posts: list[float] = []
    gets: list[float] = []
    errors = 0
    done = asyncio.Event()
    reader = uuid.uuid4()
    limits = httpx.Limits(max_connections=concurrency + 10)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def post(i: int) -> None:
            nonlocal errors
            tenant = uuid.uuid4()
            async with semaphore:
                started = time.perf_counter()
                response = await client.post(
                    DOMAIN_PATH,
                    json={"domain": f"portal-{i}.bench-{tenant.hex[:8]}.com"},
                    headers={"Authorization": f"Bearer {_token(key, tenant)}"},
                )
                posts.append((time.perf_counter() - started) * 1000)
                if response.status_code != 201:
                    errors += 1
                    if errors == 1:
                        sys.stderr.write(
                            f"first failed POST: {response.status_code} {response.text}\n"
                        )

        async def get_loop() -> None:
            nonlocal errors
            headers = {"Authorization": f"Bearer {_token(key, reader)}"}
            while not done.is_set():
                started = time.perf_counter()
                response = await client.get(DOMAIN_PATH, headers=headers)
                gets.append((time.perf_counter() - started) * 1000)
                if response.status_code >= 500:
                    errors += 1
                await asyncio.sleep(0.01)

        # First one request at a time: what a single tenant admin waits.
        single: list[float] = []
        for i in range(20):
            before = len(posts)
            await post(10_000 + i)
            single.append(posts.pop(before))
        readers = [asyncio.create_task(get_loop()) for _ in range(3)]
        await asyncio.gather(*(post(i) for i in range(requests)))
        done.set()
        await asyncio.gather(*readers)
    return single, posts, gets, errors


def run_scenario(
    name: str, admin_url: str, temporal: str, workflows: bool, requests: int, concurrency: int
) -> ScenarioResult:
    database_url = create_database(admin_url, f"bench_{uuid.uuid4().hex[:10]}")
    migrate.upgrade(database_url)
    key = secrets.token_hex(32)
    engine = make_engine(database_url)
    service = DomainService(make_session_factory(engine), base_domain="portal.algapsa.com")
    with tempfile.TemporaryDirectory(prefix="api-load-") as home:
        with serve(database_url, temporal, workflows, Path(home), key) as base_url:
            sys.stderr.write(f"{name}: {requests} POSTs at concurrency {concurrency}...\n")
            single, posts, gets, errors = asyncio.run(load(base_url, key, requests, concurrency))
            queued_after = len(service.queued_signals())
            drained: float | None = None
            if name == "healthy":
                started = time.monotonic()
                while service.queued_signals() and time.monotonic() - started < 300:
                    time.sleep(0.2)
                drained = round(time.monotonic() - started, 1)
    engine.dispose()
    return ScenarioResult(
        scenario=name,
        single_p50_ms=round(statistics.median(single), 1),
        single_max_ms=round(max(single), 1),
        posts=len(posts),
        post_p50_ms=round(statistics.median(posts), 1),
        post_p99_ms=round(_percentile(posts, 0.99), 1),
        post_max_ms=round(max(posts), 1),
        gets=len(gets),
        get_p50_ms=round(statistics.median(gets), 1) if gets else 0.0,
        get_p99_ms=round(_percentile(gets, 0.99), 1),
        get_max_ms=round(max(gets), 1) if gets else 0.0,
        errors=errors,
        queued_after=queued_after,
        drained_in_s=drained,
    )


def table(results: list[ScenarioResult]) -> str:
    lines = [
        "| scenario | one POST at a time: p50 / max (ms) | concurrent POSTs "
        "| POST p50 / p99 / max (ms) | GETs meanwhile | GET p50 / p99 / max (ms) "
        "| errors | queued after load | drained in |",
        "|---|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in results:
        drained = f"{r.drained_in_s} s" if r.drained_in_s is not None else "-"
        lines.append(
            f"| {r.scenario} | {r.single_p50_ms} / {r.single_max_ms} "
            f"| {r.posts} | {r.post_p50_ms} / {r.post_p99_ms} / {r.post_max_ms} "
            f"| {r.gets} | {r.get_p50_ms} / {r.get_p99_ms} / {r.get_max_ms} | {r.errors} "
            f"| {r.queued_after} | {drained} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=45)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="api-load-temporal-") as logs:
        with postgres_server() as admin_url, temporal_dev_server(Path(logs)) as temporal:
            results.append(
                run_scenario(
                    "no workflows", admin_url, temporal, False, args.requests, args.concurrency
                )
            )
            results.append(
                run_scenario("healthy", admin_url, temporal, True, args.requests, args.concurrency)
            )
            results.append(
                run_scenario(
                    "down", admin_url, closed_port(), True, args.requests, args.concurrency
                )
            )
            with black_hole() as hole:
                results.append(
                    run_scenario(
                        "black-holed", admin_url, hole, True, args.requests, args.concurrency
                    )
                )
    if args.json:
        sys.stdout.write(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    else:
        sys.stdout.write(table(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
