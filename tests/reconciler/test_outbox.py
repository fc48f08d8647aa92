"""reconciler.outbox against the real Temporal dev server: healthy, down, black-holed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory
from reconciler import payloads as p
from reconciler.outbox import SignalDispatcher, backoff
from tests.support import network
from tests.support.timings import TEST_TIMINGS

pytestmark = pytest.mark.temporal


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _service(url: str, clock: Clock) -> DomainService:
    return DomainService(
        make_session_factory(make_engine(url)),
        base_domain="portal.algapsa.com",
        clock=clock,
        outbox=True,
    )


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a black-holed route)."""
    with network.black_hole() as address:
        yield address


def _dispatcher(service: DomainService, address: str, queue: str) -> SignalDispatcher:
    return SignalDispatcher(
        service,
        lambda: Client.connect(address),
        environment="staging",
        task_queue=queue,
        timings=TEST_TIMINGS,
        connect_timeout=1.0,
        rpc_timeout=2.0,
    )


async def _status(address: str, tenant: uuid.UUID) -> WorkflowExecutionStatus | None:
    client = await Client.connect(address)
    return (
        await client.get_workflow_handle(p.registration_workflow_id(str(tenant))).describe()
    ).status


def test_a_signal_committed_by_a_process_that_died_is_delivered_by_the_next_dispatcher(
    database_url: str, temporal_address: str
) -> None:
    clock = Clock()
    tenant = uuid.uuid4()
    # The process that took the request commits and dies before any delivery.
    _service(database_url, clock).request(tenant, "portal.acme.com", "operator:t")

    survivor = _service(database_url, clock)
    queue = f"outbox-{uuid.uuid4().hex[:8]}"  # no worker polls it: the run stays open
    report = asyncio.run(_dispatcher(survivor, temporal_address, queue).dispatch_once())

    assert (report.delivered, report.failed) == (1, 0)
    assert asyncio.run(_status(temporal_address, tenant)) is WorkflowExecutionStatus.RUNNING
    assert survivor.queued_signals() == []


@pytest.mark.parametrize("outage", ["down", "black-holed"])
def test_while_temporal_is_unreachable_the_signal_waits_and_goes_out_when_it_is_back(
    outage: str, database_url: str, temporal_address: str, black_hole: str
) -> None:
    clock = Clock()
    service = _service(database_url, clock)
    tenant = uuid.uuid4()
    service.request(tenant, "portal.acme.com", "operator:t")
    queue = f"outbox-{uuid.uuid4().hex[:8]}"
    unreachable = network.closed_port() if outage == "down" else black_hole

    report = asyncio.run(_dispatcher(service, unreachable, queue).dispatch_once())

    assert (report.delivered, report.failed) == (0, 1)
    assert report.error is not None
    assert "cannot reach Temporal" in report.error
    (queued,) = service.queued_signals()
    assert (queued.tenant_id, queued.attempts) == (tenant, 1)
    assert queued.next_attempt_at == clock.now + backoff(0)
    # Not due again before its backoff...
    assert asyncio.run(_dispatcher(service, temporal_address, queue).dispatch_once()).delivered == 0
    # ...and delivered once it is, now that Temporal answers.
    clock.now += backoff(0)
    report = asyncio.run(_dispatcher(service, temporal_address, queue).dispatch_once())
    assert (report.delivered, report.failed) == (1, 0)
    assert service.queued_signals() == []
    assert asyncio.run(_status(temporal_address, tenant)) is WorkflowExecutionStatus.RUNNING


def test_backoff_doubles_up_to_a_minute() -> None:
    assert [backoff(n).total_seconds() for n in (0, 1, 2, 5, 6, 30)] == [1, 2, 4, 32, 60, 60]
