"""core.fleet: time to active and domains per status per day, from audit entries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import UUID

import pytest

from core.fleet import status_per_day, time_to_active
from core.status import DomainStatus

S = DomainStatus
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class Entry:
    occurred_at: datetime
    tenant_id: UUID
    action: str
    domain: str | None
    status_before: DomainStatus | None
    status_after: DomainStatus | None
    outcome: str = "ok"


def _path(
    tenant: UUID, start: datetime, steps: Sequence[tuple[float, str, DomainStatus]], domain: str
) -> list[Entry]:
    """Entries for (minutes after start, action, status) in order, each from the previous."""
    entries = []
    before: DomainStatus | None = None
    for minutes, action, after in steps:
        entries.append(
            Entry(
                occurred_at=start + timedelta(minutes=minutes),
                tenant_id=tenant,
                action=action,
                domain=domain,
                status_before=before,
                status_after=after,
            )
        )
        before = after
    return entries


HAPPY = [
    (0, "request", S.PENDING_DNS),
    (1, "record_status", S.VERIFYING_DNS),
    (2, "record_status", S.PENDING_CERTIFICATE),
    (3, "record_status", S.CERTIFICATE_ISSUING),
    (9, "record_status", S.DEPLOYING),
    (12, "record_status", S.ACTIVE),
]


def test_time_to_active_runs_from_the_request_to_the_first_active() -> None:
    tenant = uuid.uuid4()
    entries = _path(tenant, T0, HAPPY, "portal.acme.com")
    # A re-check of an active domain writes active -> active: not a second result.
    entries.append(
        Entry(
            occurred_at=T0 + timedelta(hours=2),
            tenant_id=tenant,
            action="record_status",
            domain="portal.acme.com",
            status_before=S.ACTIVE,
            status_after=S.ACTIVE,
        )
    )
    [result] = time_to_active(reversed(entries))  # order of the input does not matter
    assert result.tenant_id == tenant
    assert result.domain == "portal.acme.com"
    assert result.seconds == 12 * 60


def test_a_replacement_restarts_the_clock_and_a_disable_stops_it() -> None:
    replaced, disabled = uuid.uuid4(), uuid.uuid4()
    first = _path(replaced, T0, HAPPY, "old.acme.com")
    again = _path(
        replaced,
        T0 + timedelta(days=1),
        [(0, "replace", S.PENDING_DNS), *HAPPY[1:4], (30, "record_status", S.ACTIVE)],
        "new.acme.com",
    )
    stopped = _path(
        disabled,
        T0,
        [*HAPPY[:3], (4, "disable", S.DISABLED), (5, "record_status", S.ACTIVE)],
        "gone.acme.com",
    )
    results = time_to_active([*stopped, *again, *first])
    assert [(r.domain, r.seconds) for r in results] == [
        ("old.acme.com", 12 * 60),
        ("new.acme.com", 30 * 60),
    ]


def test_refused_and_noop_rows_do_not_start_or_end_anything() -> None:
    tenant = uuid.uuid4()
    entries = [
        Entry(
            occurred_at=T0,
            tenant_id=tenant,
            action="request",
            domain="x.acme.com",
            status_before=None,
            status_after=S.PENDING_DNS,
            outcome="denied",
        ),
        Entry(
            occurred_at=T0 + timedelta(minutes=5),
            tenant_id=tenant,
            action="record_status",
            domain="x.acme.com",
            status_before=S.DEPLOYING,
            status_after=S.ACTIVE,
        ),
    ]
    assert time_to_active(entries) == []


def test_status_per_day_counts_each_tenant_in_its_last_status_of_the_day() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    day1 = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)
    entries = [
        *_path(a, day1, HAPPY[:2], "a.acme.com"),  # verifying_dns at the end of day 1
        *_path(a, day1 + timedelta(days=1), [(0, "record_status", S.DNS_FAILED)], "a.acme.com"),
        *_path(b, day1 + timedelta(days=2), HAPPY, "b.acme.com"),  # 23:00-23:12 on day 3
    ]
    series = status_per_day(entries, first=date(2025, 2, 28), last=date(2025, 3, 4))
    assert [d.day for d in series] == [date(2025, 2, 28) + timedelta(days=n) for n in range(5)]
    summary = [{s.value: n for s, n in d.counts.items() if n} for d in series]
    assert summary == [
        {},
        {"verifying_dns": 1},
        {"dns_failed": 1},
        {"dns_failed": 1, "active": 1},
        {"dns_failed": 1, "active": 1},
    ]
    assert [d.total for d in series] == [0, 1, 1, 2, 2]
    assert set(series[0].counts) == set(DomainStatus)


def test_status_per_day_uses_utc_days() -> None:
    tenant = uuid.uuid4()
    late = datetime(2025, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC
    entries = _path(tenant, late, HAPPY[:1], "a.acme.com")
    series = status_per_day(entries, first=date(2025, 3, 1), last=date(2025, 3, 2))
    assert [d.total for d in series] == [0, 1]


@pytest.mark.parametrize(("first", "last"), [(date(2025, 3, 2), date(2025, 3, 1))])
def test_an_empty_range_is_an_empty_series(first: date, last: date) -> None:
    assert status_per_day([], first=first, last=last) == []
