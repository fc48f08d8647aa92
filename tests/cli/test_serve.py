"""`portal-domains token` in process, and `portal-domains serve` as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.auth import verify_token
from api.settings import ApiSettings
from cli.main import main
from db import migrate
from loopback.temporal import free_port, wait_for_port

SECRET = "cli-test-secret-" + "0" * 32
TENANT = "3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f"
# The console script installed with the package (pip install -e .).
CLI = str(Path(sys.executable).with_name("portal-domains"))


@pytest.fixture
def jwt_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTAL_DOMAINS_JWT_KEY", SECRET)
    for name in ("PORTAL_DOMAINS_JWT_ALGORITHM", "PORTAL_DOMAINS_JWT_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------- token


@pytest.mark.usefixtures("jwt_env")
def test_token_prints_a_jwt_the_api_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys, "token", "--tenant", TENANT, "--role", "tenant_admin", "--ttl", "60"
    )
    assert (code, err) == (0, "")
    principal = verify_token(out.strip(), ApiSettings.from_env())
    assert principal.tenant_id == uuid.UUID(TENANT)
    assert (principal.role, principal.actor) == ("tenant_admin", "user:dev")


@pytest.mark.usefixtures("jwt_env")
def test_an_operator_token_needs_no_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "token", "--role", "platform_operator", "--subject", "ops")
    assert code == 0
    principal = verify_token(out.strip(), ApiSettings.from_env())
    assert (principal.tenant_id, principal.subject) == (None, "ops")


@pytest.mark.usefixtures("jwt_env")
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["token", "--role", "tenant_admin"], "--tenant is required"),
        (["token", "--tenant", "acme", "--role", "tenant_admin"], "invalid_tenant_id"),
        (["token", "--tenant", TENANT, "--role", "tenant_admin", "--ttl", "0"], "ttl"),
    ],
)
def test_token_refuses_bad_arguments_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")
    assert fragment in err


def test_token_refuses_when_the_algorithm_is_not_hs256(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    monkeypatch.setenv("PORTAL_DOMAINS_JWT_ALGORITHM", "ES256")
    monkeypatch.setenv("PORTAL_DOMAINS_JWT_KEY", public)
    code, _, err = _run(capsys, "token", "--tenant", TENANT, "--role", "tenant_admin")
    assert code == 2
    assert "only HS256" in err


def test_token_without_a_key_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PORTAL_DOMAINS_JWT_KEY", raising=False)
    monkeypatch.delenv("PORTAL_DOMAINS_JWT_KEY_FILE", raising=False)
    code, _, err = _run(capsys, "token", "--tenant", TENANT, "--role", "tenant_admin")
    assert code == 2
    assert "PORTAL_DOMAINS_JWT_KEY" in err


# ----------------------------------------------------------------------- serve


def _serve_env(database_url: str, temporal_address: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_DOMAINS_")}
    env.update(
        {
            "PORTAL_DOMAINS_HOME": str(home),
            "PORTAL_DOMAINS_DATABASE_URL": database_url,
            "PORTAL_DOMAINS_TEMPORAL_ADDRESS": temporal_address,
            "PORTAL_DOMAINS_TASK_QUEUE": f"cli-serve-{uuid.uuid4().hex[:8]}",
            "PORTAL_DOMAINS_START_WORKFLOWS": "on",
            "PORTAL_DOMAINS_JWT_KEY": SECRET,
            "PORTAL_DOMAINS_EDITION": "enterprise",
        }
    )
    return env


def _cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def served(
    postgres_url: str, temporal_address: str, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    migrate.upgrade(postgres_url)
    env = _serve_env(postgres_url, temporal_address, tmp_path)
    port = free_port()
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, 60, proc)
        yield f"http://127.0.0.1:{port}", env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        assert "Finished server process" in log_path.read_text()


@pytest.mark.postgres
@pytest.mark.temporal
def test_serve_answers_with_tokens_from_the_token_command(
    served: tuple[str, dict[str, str]], temporal_address: str
) -> None:
    base, env = served
    minted = _cli("token", "--tenant", TENANT, "--role", "tenant_admin", env=env)
    assert minted.returncode == 0, minted.stderr
    headers = {"Authorization": f"Bearer {minted.stdout.strip()}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/api/settings/client-portal/domain").status_code == 401
        created = client.post(
            "/api/settings/client-portal/domain",
            json={"domain": "portal.acme.com"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        status = client.get("/api/settings/client-portal/domain", headers=headers)
        assert status.json()["status"] == "pending_dns"
        assert "server" not in status.headers

    async def describe() -> WorkflowExecutionStatus | None:
        # The server's outbox dispatcher starts it just after the answer: wait for it.
        client = await Client.connect(temporal_address)
        handle = client.get_workflow_handle(f"portal-domain-{TENANT}")
        deadline = time.monotonic() + 30
        while True:
            try:
                return (await handle.describe()).status
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    assert asyncio.run(describe()) is WorkflowExecutionStatus.RUNNING


@pytest.mark.postgres
def test_serve_refuses_a_database_without_the_schema(postgres_url: str, tmp_path: Path) -> None:
    result = _cli(
        "serve",
        "--port",
        str(free_port()),
        env=_serve_env(postgres_url, "127.0.0.1:1", tmp_path),
    )
    assert result.returncode == 1
    assert "db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    env = _serve_env(f"sqlite:///{tmp_path / 'db.sqlite'}", "127.0.0.1:1", tmp_path)
    del env["PORTAL_DOMAINS_JWT_KEY"]
    result = _cli("serve", "--port", str(free_port()), env=env)
    assert result.returncode == 2
    assert "PORTAL_DOMAINS_JWT_KEY" in result.stderr


@pytest.mark.postgres
@pytest.mark.temporal
def test_the_access_log_never_shows_a_handover_token(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = served
    minted = _cli("token", "--tenant", TENANT, "--role", "tenant_admin", "--ttl", "300", env=env)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    with httpx.Client(base_url=base, timeout=30) as client:
        answer = client.get("/portal/session", params={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    time.sleep(0.5)  # the access log line is written after the answer
    log = (tmp_path / "serve.log").read_text()
    assert "/portal/session?token=***" in log  # the request was logged...
    assert token not in log  # ...without its token
