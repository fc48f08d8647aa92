"""The environment workflow, fast: real workflow, a stand-in reconcile activity."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from core.violations import PolicyViolation
from reconciler import payloads as p
from reconciler.errors import to_application_error
from reconciler.workflows import EnvironmentReconcileWorkflow
from stack.automation import PolicyViolationsError

pytestmark = pytest.mark.temporal

VIOLATION = PolicyViolation(
    policy="certificate-in-gateway-namespace",
    enforcement_level="mandatory",
    resource_urn="urn:pulumi:prod::portal-domains::cert-manager.io/v1:Certificate::x",
    message="Certificate x is in msp; the gateway reads secrets from istio-system.",
)


def run_once(temporal_address: str, failure: ApplicationError | None) -> p.ReconcileOutcome:
    @activity.defn(name=p.RECONCILE_ENVIRONMENT)
    async def reconcile(inp: p.ReconcileEnvironmentInput) -> p.ReconcileOutcome:
        if failure is not None:
            raise failure
        return p.ReconcileOutcome(ok=True, message="fine", deployed_tenants=("abc1234",))

    async def main() -> p.ReconcileOutcome:
        client = await Client.connect(temporal_address)
        queue, environment = f"env-{uuid.uuid4().hex[:8]}", f"e{uuid.uuid4().hex[:8]}"
        async with Worker(
            client,
            task_queue=queue,
            workflows=[EnvironmentReconcileWorkflow],
            activities=[reconcile],
        ):
            handle = await client.start_workflow(
                EnvironmentReconcileWorkflow.run,
                p.EnvironmentState(environment=environment, debounce_seconds=0.1),
                id=p.reconcile_workflow_id(environment),
                task_queue=queue,
            )
            outcome: p.ReconcileOutcome = await handle.execute_update(
                EnvironmentReconcileWorkflow.reconcile,
                p.ReconcileRequest(request_id="r1", reason="test"),
            )
            await handle.terminate("test finished")
            return outcome

    return asyncio.run(main())


def test_a_run_refused_by_the_policy_pack_reports_each_violation_as_data(
    temporal_address: str,
) -> None:
    failure = to_application_error(PolicyViolationsError([VIOLATION]), prefix="refused: ")
    outcome = run_once(temporal_address, failure)
    assert not outcome.ok
    assert outcome.policy_violations == (VIOLATION,)


def test_other_failures_carry_no_violations(temporal_address: str) -> None:
    outcome = run_once(
        temporal_address,
        ApplicationError("git: push rejected", type="gitops_push_failed", non_retryable=True),
    )
    assert not outcome.ok
    assert outcome.policy_violations == ()
    assert "push rejected" in outcome.message
