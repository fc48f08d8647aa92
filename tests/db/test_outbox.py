"""The transactional outbox of workflow signals (db.service with outbox=True)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa

from core.status import DomainStatus
from db.errors import DomainAlreadyClaimed
from db.service import DomainService
from db.session import make_session_factory


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(engine: sa.Engine, clock: Clock) -> DomainService:
    return DomainService(
        make_session_factory(engine), base_domain="portal.algapsa.com", clock=clock, outbox=True
    )


def _queued(service: DomainService) -> list[tuple[object, str]]:
    return [(q.tenant_id, q.signal) for q in service.queued_signals()]


def test_each_change_queues_its_signal_with_it(service: DomainService) -> None:
    tenant = uuid4()
    service.request(tenant, "portal.acme.com", "operator:t")
    service.request(tenant, "portal.acme.com", "operator:t")  # a repeat queues again
    service.refresh(tenant, "operator:t")
    service.request(tenant, "clients.acme.com", "operator:t")  # replace
    service.disable(tenant, "operator:t")
    assert _queued(service) == [
        (tenant, "refresh"),
        (tenant, "refresh"),
        (tenant, "refresh"),
        (tenant, "refresh"),
        (tenant, "remove"),
    ]


def test_a_refused_change_queues_nothing(service: DomainService) -> None:
    holder, other = uuid4(), uuid4()
    service.request(holder, "portal.acme.com", "operator:t")
    for expected, new in [
        (DomainStatus.PENDING_DNS, DomainStatus.VERIFYING_DNS),
        (DomainStatus.VERIFYING_DNS, DomainStatus.PENDING_CERTIFICATE),
    ]:
        service.record_status(holder, expected_status=expected, new_status=new, message="-")
    before = _queued(service)
    with pytest.raises(DomainAlreadyClaimed):
        service.request(other, "portal.acme.com", "operator:t")
    with pytest.raises(ValueError, match="hostname"):
        service.request(other, "not a hostname", "operator:t")
    assert _queued(service) == before  # status writes of the workflow queue nothing either


def test_without_the_outbox_nothing_is_queued(engine: sa.Engine) -> None:
    plain = DomainService(make_session_factory(engine), base_domain="portal.algapsa.com")
    plain.request(uuid4(), "portal.acme.com", "operator:t")
    assert plain.queued_signals() == []


def test_a_tenants_rows_collapse_into_one_delivery_and_the_last_signal_wins(
    service: DomainService,
) -> None:
    a, b = uuid4(), uuid4()
    service.request(a, "portal.acme.com", "operator:t")
    service.request(b, "portal.globex.io", "operator:t")
    service.disable(a, "operator:t")
    due = service.due_signals()
    assert [(d.tenant_id, d.signal) for d in due] == [(a, "remove"), (b, "refresh")]
    # A change made while the delivery was in flight is not lost with it.
    service.request(a, "portal.acme.com", "operator:t")
    service.signal_delivered(due[0])
    assert _queued(service) == [(b, "refresh"), (a, "refresh")]


def test_a_failed_delivery_waits_for_its_backoff_and_keeps_the_reason(
    service: DomainService, clock: Clock
) -> None:
    tenant = uuid4()
    service.request(tenant, "portal.acme.com", "operator:t")
    (pending,) = service.due_signals()
    service.signal_failed(pending, "cannot reach Temporal (timed out)", timedelta(seconds=4))
    assert service.due_signals() == []
    (queued,) = service.queued_signals()
    assert (queued.attempts, queued.last_error) == (1, "cannot reach Temporal (timed out)")
    clock.now += timedelta(seconds=4)
    (again,) = service.due_signals()
    assert again.attempts == 1
