"""Recorded workflow histories still replay against today's workflow code.

Histories of the happy path (tests/e2e) and of the failure paths
(tests/reconciler/test_registration_workflow.py) live in histories/;
re-record with RECORD_HISTORY=1 (refused under CI).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from reconciler.workflows import EnvironmentReconcileWorkflow, PortalDomainRegistrationWorkflow

HISTORIES = Path(__file__).parent / "histories"
EXPECTED = {
    "environment-reconcile",
    "registration-to-active",
    "registration-dns-failed",
    "registration-caa-refused",
    "registration-certificate-failed",
    "registration-reconcile-failed",
    "registration-cname-lost",
}


@pytest.mark.parametrize("history_file", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_histories_replay_deterministically(history_file: Path) -> None:
    recorded = json.loads(history_file.read_text())
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])

    async def replay() -> None:
        await Replayer(
            workflows=[PortalDomainRegistrationWorkflow, EnvironmentReconcileWorkflow]
        ).replay_workflow(history)

    asyncio.run(replay())


def test_every_path_has_a_recorded_history() -> None:
    assert {path.stem for path in HISTORIES.glob("*.json")} == EXPECTED
