"""Deliver the workflow signals the domain service queued (the transactional outbox).

A change to a domain writes its signal to `portal_domain_outbox` in the same
transaction (db.service, `outbox=True`), so an API request or a CLI command never
waits for Temporal, and nothing is lost when the process dies between the commit
and the start: the row is still queued for the next pass.

`SignalDispatcher` delivers them: one shared Temporal client (connected lazily,
with a short timeout), a short RPC timeout per start, one delivery per tenant per
pass (its queued rows collapsed, the last signal wins), and exponential backoff
per tenant while Temporal refuses or does not answer. Delivery is
signal-with-start, which is idempotent, so two dispatchers (the API server's and
the worker's) may race on a row without harm: the workflow just wakes twice.

It runs as an asyncio task inside the worker (`run`), on a thread of its own in
the API server (`BackgroundDispatcher`), and once at the end of a CLI command
(`dispatch_once`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client

from db.service import DomainService, PendingSignal
from reconciler import payloads as p
from reconciler.starter import signal_registration

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(seconds=60)


def backoff(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s, ... capped at a minute: the wait after `attempts` failures."""
    return min(MAX_BACKOFF, timedelta(seconds=2 ** min(attempts, 6)))


@dataclass(frozen=True)
class DispatchReport:
    delivered: int
    failed: int
    error: str | None = None  # the last failure, for a one-line progress message


class SignalDispatcher:
    def __init__(
        self,
        service: DomainService,
        connect: Callable[[], Awaitable[Client]],
        *,
        environment: str,
        task_queue: str,
        timings: p.Timings,
        connect_timeout: float = 3.0,
        rpc_timeout: float = 5.0,
        poll_interval: float = 1.0,
        batch: int = 100,
    ) -> None:
        self._service = service
        self._connect = connect
        self._environment = environment
        self._task_queue = task_queue
        self._timings = timings
        self._connect_timeout = connect_timeout
        self._rpc_timeout = timedelta(seconds=rpc_timeout)
        self._poll_interval = poll_interval
        self._batch = batch
        self._client: Client | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def dispatch_once(self) -> DispatchReport:
        """One pass over what is due; never raises for Temporal's failures."""
        due = await asyncio.to_thread(self._service.due_signals, limit=self._batch)
        if not due:
            return DispatchReport(0, 0)
        try:
            client = await self._client_now()
        except (RuntimeError, OSError, TimeoutError) as err:
            unreachable = f"cannot reach Temporal ({_describe(err)})"
            for pending in due:
                await self._failed(pending, unreachable)
            return DispatchReport(0, len(due), unreachable)
        delivered = failed = 0
        error: str | None = None
        for pending in due:
            try:
                await signal_registration(
                    client,
                    tenant_id=str(pending.tenant_id),
                    environment=self._environment,
                    task_queue=self._task_queue,
                    signal=pending.signal,
                    timings=self._timings,
                    rpc_timeout=self._rpc_timeout,
                )
            except Exception as err:  # noqa: BLE001 - every failure is retried later
                error = f"starting the workflow failed ({_describe(err)})"
                await self._failed(pending, error)
                failed += 1
                continue
            await asyncio.to_thread(self._service.signal_delivered, pending)
            delivered += 1
        return DispatchReport(delivered, failed, error)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: every `poll_interval`, or at once when nudged."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while not stop.is_set():
            try:
                await self.dispatch_once()
            except Exception:  # the database may be briefly unreachable: keep going
                log.exception("outbox pass failed; retrying in %ss", self._poll_interval)
            self._wake.clear()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            _, pending = await asyncio.wait(
                waits, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()

    def nudge(self) -> None:
        """Wake `run` now (from any thread): a change was just committed."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop closed meanwhile
            pass

    async def _client_now(self) -> Client:
        if self._client is None:
            self._client = await asyncio.wait_for(self._connect(), self._connect_timeout)
        return self._client

    async def _failed(self, pending: PendingSignal, error: str) -> None:
        retry_in = backoff(pending.attempts)
        log.warning(
            "workflow signal for tenant %s not delivered (attempt %d): %s; retrying in %ss",
            pending.tenant_id,
            pending.attempts + 1,
            error,
            int(retry_in.total_seconds()),
        )
        await asyncio.to_thread(self._service.signal_failed, pending, error, retry_in)


class BackgroundDispatcher:
    """A SignalDispatcher on a thread with its own event loop (for the API server)."""

    def __init__(self, dispatcher: SignalDispatcher) -> None:
        self.dispatcher = dispatcher
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="outbox-dispatcher", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)

    def nudge(self) -> None:
        self.dispatcher.nudge()

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self.dispatcher.run(self._stop)

        asyncio.run(main())


def _describe(err: BaseException) -> str:
    text = str(err) or err.__class__.__name__
    return text.splitlines()[0][:200]
