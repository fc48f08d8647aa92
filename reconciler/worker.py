"""The Temporal worker: which workflows and activities it hosts, and its startup repair."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from core.status import DomainStatus
from db.service import REMOVAL, REMOVAL_PENDING
from reconciler import payloads as p
from reconciler.timings import timings_for
from reconciler.wiring import Runtime
from reconciler.workflows import EnvironmentReconcileWorkflow, PortalDomainRegistrationWorkflow

WORKFLOWS = [PortalDomainRegistrationWorkflow, EnvironmentReconcileWorkflow]


def make_worker(runtime: Runtime, *, max_concurrent_activities: int = 16) -> Worker:
    return Worker(
        runtime.client,
        task_queue=runtime.settings.task_queue,
        workflows=WORKFLOWS,
        activities=runtime.activities.all(),
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent_activities),
        max_concurrent_activities=max_concurrent_activities,
    )


async def resume_registrations(runtime: Runtime) -> int:
    """Start the workflow of every domain that should have one and lacks it.

    Covers a hook that could not reach Temporal (the row was committed, the
    start was not): the worker repairs it at startup. That includes a removal
    requested while Temporal was down: a disabled domain not yet `removed` gets
    its workflow too, which has the objects pruned. Running workflows are left
    alone (USE_EXISTING).
    """
    started = 0
    for view in runtime.deps.domains.list():
        if (
            view.status is DomainStatus.DISABLED
            and (view.verification_details or {}).get(REMOVAL) not in REMOVAL_PENDING
        ):
            continue
        await runtime.client.start_workflow(
            PortalDomainRegistrationWorkflow.run,
            p.RegistrationInput(
                tenant_id=str(view.tenant_id),
                environment=runtime.settings.environment,
                timings=timings_for(runtime.settings.timings),
            ),
            id=p.registration_workflow_id(str(view.tenant_id)),
            task_queue=runtime.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        started += 1
    return started


async def run_until(stop: asyncio.Event, worker: Worker) -> None:
    async with worker:
        await stop.wait()
