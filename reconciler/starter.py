"""Start or signal a tenant's registration workflow (signal-with-start).

This is the hook the domain service calls after a committed request, refresh
or disable. Signal-with-start is idempotent: a running workflow just gets the
signal, a finished or missing one is started with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from temporalio.client import Client

from reconciler import payloads as p
from reconciler.workflows import PortalDomainRegistrationWorkflow

log = logging.getLogger(__name__)

Signal = Literal["refresh", "remove"]

FAST_TIMINGS = p.Timings(
    dns_check_delays=(0.5, 1.0, 2.0),
    dns_timeout=20,
    cert_poll_interval=1,
    cert_timeout=60,
    https_poll_interval=1,
    https_timeout=30,
    reconcile_wait_timeout=600,
    failed_retry_interval=30,
    watch_interval=5,
    watch_checks_before_continue_as_new=20,
)


# For the test suite: every wait in seconds or less.
TEST_TIMINGS = p.Timings(
    dns_check_delays=(0.3, 0.5),
    dns_timeout=4,
    cert_poll_interval=0.5,
    cert_timeout=30,
    https_poll_interval=0.5,
    https_timeout=15,
    reconcile_wait_timeout=300,
    failed_retry_interval=30,
    watch_interval=1,
    watch_checks_before_continue_as_new=5,
)


def timings_for(profile: str) -> p.Timings:
    return {"fast": FAST_TIMINGS, "test": TEST_TIMINGS}.get(profile, p.Timings())


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
    import threading

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
