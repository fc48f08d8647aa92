"""The CLI with workflows on: a change is saved and its signal queued whatever Temporal does."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from cli.main import main
from reconciler import payloads as p
from tests.support.network import closed_port

pytestmark = pytest.mark.temporal


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", f"sqlite:///{tmp_path / 'pd.db'}")
    monkeypatch.setenv("PORTAL_DOMAINS_START_WORKFLOWS", "on")
    monkeypatch.setenv("PORTAL_DOMAINS_TASK_QUEUE", f"cli-{uuid.uuid4().hex[:8]}")  # no worker
    monkeypatch.setenv("USER", "alice")
    assert main(["db", "upgrade"]) == 0


def _signals(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["domains", "signals", "--json"]) == 0
    queued: list[dict[str, object]] = json.loads(capsys.readouterr().out)["queued"]
    return queued


def test_with_temporal_down_a_request_is_saved_and_its_signal_waits_in_the_outbox(
    cli_env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_TEMPORAL_ADDRESS", closed_port())
    tenant = str(uuid.uuid4())
    assert main(["domains", "request", "--tenant", tenant, "--domain", "portal.acme.com"]) == 0
    err = capsys.readouterr().err
    assert "the workflow signal is queued" in err
    (queued,) = _signals(capsys)
    assert (queued["tenant_id"], queued["signal"], queued["attempts"]) == (tenant, "refresh", 1)
    assert "cannot reach Temporal" in str(queued["last_error"])
    # Listing delivers nothing and changes nothing.
    assert _signals(capsys) == [queued]


def test_with_temporal_up_the_command_delivers_the_signal_before_it_ends(
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    temporal_address: str,
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_TEMPORAL_ADDRESS", temporal_address)
    tenant = str(uuid.uuid4())
    assert main(["domains", "request", "--tenant", tenant, "--domain", "portal.acme.com"]) == 0
    assert _signals(capsys) == []

    async def status() -> WorkflowExecutionStatus | None:
        client = await Client.connect(temporal_address)
        handle = client.get_workflow_handle(p.registration_workflow_id(tenant))
        return (await handle.describe()).status

    assert asyncio.run(status()) is WorkflowExecutionStatus.RUNNING
