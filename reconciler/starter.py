"""Start or signal the workflows from outside a worker.

`signal_registration` wakes a tenant's registration workflow after a committed
request, refresh or disable (delivered from the outbox by reconciler.outbox).
Signal-with-start is idempotent: a running workflow just gets the signal, a
finished or missing one is started with it.
`reconcile_now` is an operator's (or the demo's) reconcile: an update-with-start
of the environment workflow, so it joins the worker's queue and can never race
or cancel the run in flight.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, Literal

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from reconciler import payloads as p
from reconciler.workflows import EnvironmentReconcileWorkflow, PortalDomainRegistrationWorkflow

log = logging.getLogger(__name__)

Signal = Literal["refresh", "remove"]


async def signal_registration(
    client: Client,
    *,
    tenant_id: str,
    environment: str,
    task_queue: str,
    signal: Signal,
    timings: p.Timings,
    rpc_timeout: timedelta | None = None,
) -> None:
    await client.start_workflow(
        PortalDomainRegistrationWorkflow.run,
        p.RegistrationInput(tenant_id=tenant_id, environment=environment, timings=timings),
        id=p.registration_workflow_id(tenant_id),
        task_queue=task_queue,
        start_signal=signal,
        rpc_timeout=rpc_timeout,
    )


async def reconcile_now(
    client: Client,
    *,
    environment: str,
    task_queue: str,
    request: p.ReconcileRequest,
    debounce_seconds: float = 2.0,
) -> p.ReconcileOutcome:
    """One reconcile of `environment` through its workflow; waits for its outcome."""
    start = WithStartWorkflowOperation(
        EnvironmentReconcileWorkflow.run,
        p.EnvironmentState(environment=environment, debounce_seconds=debounce_seconds),
        id=p.reconcile_workflow_id(environment),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    outcome: p.ReconcileOutcome = await client.execute_update_with_start_workflow(
        EnvironmentReconcileWorkflow.reconcile, request, start_workflow_operation=start
    )
    return outcome


async def reconcile_busy(client: Client, environment: str) -> bool:
    """True when the environment workflow runs or queues a reconcile right now."""
    handle = client.get_workflow_handle(p.reconcile_workflow_id(environment))
    try:
        description = await handle.describe()
        if description.status is not WorkflowExecutionStatus.RUNNING:
            return False
        status: dict[str, int] = await handle.query(EnvironmentReconcileWorkflow.status)
    except RPCError:
        return False  # no such workflow
    return bool(status.get("in_flight") or status.get("pending"))


def run_sync(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine from synchronous code, even when a loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro_factory())
        return
    # Called from inside a running loop (e.g. the API server): use a thread.
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro_factory())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
