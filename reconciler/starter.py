"""Start or signal a tenant's registration workflow (signal-with-start).

This is the hook the domain service calls after a committed request, refresh
or disable. Signal-with-start is idempotent: a running workflow just gets the
signal, a finished or missing one is started with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from temporalio.client import Client

from reconciler import payloads as p
from reconciler.workflows import PortalDomainRegistrationWorkflow

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
) -> None:
    await client.start_workflow(
        PortalDomainRegistrationWorkflow.run,
        p.RegistrationInput(tenant_id=tenant_id, environment=environment, timings=timings),
        id=p.registration_workflow_id(tenant_id),
        task_queue=task_queue,
        start_signal=signal,
    )


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
