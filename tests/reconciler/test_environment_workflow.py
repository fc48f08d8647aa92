"""The environment workflow, fast: real workflow, a stand-in reconcile activity."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

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


def reconcile_through_workflow(
    temporal_address: str, activities: list[Callable[..., Any]]
) -> p.ReconcileOutcome:
    """One reconcile request through a fresh environment workflow with these activities."""

    async def main() -> p.ReconcileOutcome:
        client = await Client.connect(temporal_address)
        queue, environment = f"env-{uuid.uuid4().hex[:8]}", f"e{uuid.uuid4().hex[:8]}"
        async with Worker(
            client,
            task_queue=queue,
            workflows=[EnvironmentReconcileWorkflow],
            activities=activities,
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


def run_once(temporal_address: str, failure: ApplicationError | None) -> p.ReconcileOutcome:
    @activity.defn(name=p.RECONCILE_ENVIRONMENT)
    async def reconcile(inp: p.ReconcileEnvironmentInput) -> p.ReconcileOutcome:
        if failure is not None:
            raise failure
        return p.ReconcileOutcome(ok=True, message="fine", deployed_tenants=("abc1234",))

    @activity.defn(name=p.ENVIRONMENT_SHARDS)
    async def shards(environment: str) -> int:
        return 1

    return reconcile_through_workflow(temporal_address, [reconcile, shards])


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


def test_a_sharded_environment_runs_its_shards_at_once_and_publishes_them_all(
    temporal_address: str,
) -> None:
    """Three shards run concurrently; one refused shard does not keep the others out of Git."""
    running: set[int] = set()
    overlap: list[int] = []
    published: list[p.PublishEnvironmentInput] = []

    @activity.defn(name=p.ENVIRONMENT_SHARDS)
    async def shards(environment: str) -> int:
        return 3

    @activity.defn(name=p.RECONCILE_SHARD)
    async def reconcile_shard(inp: p.ReconcileShardInput) -> p.ShardOutcome:
        running.add(inp.shard)
        overlap.append(len(running))
        await asyncio.sleep(0.5)
        running.discard(inp.shard)
        if inp.shard == 1:
            raise to_application_error(PolicyViolationsError([VIOLATION]), prefix="refused: ")
        return p.ShardOutcome(
            shard=inp.shard, stack=f"{inp.environment}-{inp.shard}", ok=True, created=3
        )

    @activity.defn(name=p.PUBLISH_ENVIRONMENT)
    async def publish(inp: p.PublishEnvironmentInput) -> p.ReconcileOutcome:
        published.append(inp)
        failed = [s for s in inp.shards if not s.ok]
        return p.ReconcileOutcome(
            ok=not failed,
            message="published",
            created=sum(s.created for s in inp.shards),
            policy_violations=tuple(v for s in failed for v in s.policy_violations),
        )

    outcome = reconcile_through_workflow(temporal_address, [shards, reconcile_shard, publish])
    assert max(overlap) == 3  # all three shards were running at the same moment
    assert len(published) == 1
    assert [(s.shard, s.ok) for s in published[0].shards] == [(0, True), (1, False), (2, True)]
    assert published[0].shards[1].policy_violations == (VIOLATION,)
    assert not outcome.ok
    assert outcome.created == 6
    assert outcome.policy_violations == (VIOLATION,)
