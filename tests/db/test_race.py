"""Concurrent writes on real PostgreSQL: unique constraints decide, never a lucky read.

Each racer's transaction is held at a barrier just before it inserts or updates
its row, after it has checked that the hostname is free, so both checks pass
and the database constraints must settle the race. Requests only claim a
hostname (several tenants may); the race for holding it is the status write
that records its DNS as verified.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from core.status import DomainStatus
from db import migrate
from db.models import PortalDomain
from db.service import DomainAlreadyClaimed, DomainService, DomainView
from db.session import make_engine, make_session_factory

pytestmark = pytest.mark.postgres

BASE = "portal.algapsa.com"
ROUNDS = 5


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def _hold_writers_at(factory: sessionmaker[Session], barrier: threading.Barrier) -> None:
    """Make each thread's first domain-row flush wait for the other thread's."""
    waited = threading.local()

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        touches_domain = any(
            isinstance(obj, PortalDomain) for obj in [*session.new, *session.dirty]
        )
        if touches_domain and not getattr(waited, "done", False):
            waited.done = True
            barrier.wait(timeout=20)

    event.listen(factory, "before_flush", before_flush)


def _hold_updates_at(factory: sessionmaker[Session], barrier: threading.Barrier) -> None:
    """Make each thread's first UPDATE statement wait for the other thread's."""
    waited = threading.local()

    def before_execute(state: ORMExecuteState) -> None:
        if state.is_update and not getattr(waited, "done", False):
            waited.done = True
            barrier.wait(timeout=20)

    event.listen(factory, "do_orm_execute", before_execute)


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at once; return each one's result or exception."""

    def run(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:  # the race's loser is part of the result
            return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_tenants_racing_to_claim_one_hostname_both_get_an_unverified_claim(
    engine: sa.Engine, round_: int
) -> None:
    factory = make_session_factory(engine)
    _hold_writers_at(factory, threading.Barrier(2))
    service = DomainService(factory, base_domain=BASE)
    tenants = [uuid4(), uuid4()]
    host = f"portal{round_}.acme.com"

    def claim(tenant: UUID) -> Callable[[], DomainView]:
        return lambda: service.request(tenant, host, f"tenant:{tenant}")

    results = _race([claim(t) for t in tenants])

    assert not [r for r in results if isinstance(r, Exception)], results
    rows = service.list()
    assert sorted(r.tenant_id for r in rows) == sorted(tenants)
    assert {(r.domain, r.status) for r in rows} == {(host, DomainStatus.PENDING_DNS)}
    for tenant in tenants:
        assert [(e.action, e.outcome) for e in service.audit_log(tenant)] == [("request", "ok")]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_tenants_verifying_one_hostname_at_once_exactly_one_holds_it(
    engine: sa.Engine, round_: int
) -> None:
    factory = make_session_factory(engine)
    service = DomainService(factory, base_domain=BASE)
    tenants = [uuid4(), uuid4()]
    host = f"portal{round_}.acme.com"
    for tenant in tenants:
        service.request(tenant, host, f"tenant:{tenant}")
        service.record_status(
            tenant,
            expected_status=DomainStatus.PENDING_DNS,
            new_status=DomainStatus.VERIFYING_DNS,
            message="checking",
        )
    before = {v.tenant_id: v for v in service.list()}
    _hold_updates_at(factory, threading.Barrier(2))

    def verify(tenant: UUID) -> Callable[[], DomainView]:
        return lambda: service.record_status(
            tenant,
            expected_status=DomainStatus.VERIFYING_DNS,
            new_status=DomainStatus.PENDING_CERTIFICATE,
            message="DNS verified",
        )

    results = _race([verify(t) for t in tenants])

    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    assert isinstance(losers[0], DomainAlreadyClaimed), results
    winner = winners[0].tenant_id
    loser = next(t for t in tenants if t != winner)
    assert str(winner) not in losers[0].message
    assert service.get(winner).status is DomainStatus.PENDING_CERTIFICATE
    assert service.get(loser) == before[loser]
    last = service.audit_log(loser)[-1]
    assert (last.action, last.outcome, last.status_after) == (
        "record_status",
        "conflict",
        DomainStatus.VERIFYING_DNS,
    )


def test_tenants_racing_with_the_same_seven_digit_prefix_get_different_ones(
    engine: sa.Engine,
) -> None:
    factory = make_session_factory(engine)
    _hold_writers_at(factory, threading.Barrier(2))
    service = DomainService(factory, base_domain=BASE)
    first = UUID("abcdef10-0000-4000-8000-000000000001")
    second = UUID("abcdef12-0000-4000-8000-000000000002")

    results = _race(
        [
            lambda: service.request(first, "portal.first.com", "tenant:first"),
            lambda: service.request(second, "portal.second.com", "tenant:second"),
        ]
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    prefixes = sorted(v.canonical_prefix for v in service.list())
    # Both saw "abcdef1" free; the constraint made the loser retry and lengthen.
    assert prefixes[0] == "abcdef1"
    assert prefixes[1] in {"abcdef10", "abcdef12"}
    assert len({v.canonical_host for v in service.list()}) == 2


def test_one_tenant_racing_itself_ends_with_one_row(engine: sa.Engine) -> None:
    factory = make_session_factory(engine)
    _hold_writers_at(factory, threading.Barrier(2))
    service = DomainService(factory, base_domain=BASE)
    tenant = uuid4()

    results = _race(
        [
            lambda: service.request(tenant, "portal.acme.com", "operator:a"),
            lambda: service.request(tenant, "clients.acme.com", "operator:b"),
        ]
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    [row] = service.list()
    assert row.domain in {"portal.acme.com", "clients.acme.com"}
    assert row.canonical_prefix == tenant.hex[:7]
    outcomes = [(e.action, e.outcome) for e in service.audit_log(tenant)]
    assert outcomes[0] == ("request", "ok")
    assert outcomes[1] == ("replace", "ok")
