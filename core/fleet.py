"""Fleet series for the operator console, computed from the audit trail.

Pure functions over audit entries (any object with the fields of
db.service.AuditEntry, see `AuditFact`): how long each domain took from its
request to `active`, and how many domains were in each status at the end of
each day. The audit trail is the only history there is: a row keeps just its
current status, while every accepted transition is an audit row with
`status_after`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from uuid import UUID

from core.status import DomainStatus

# db.service.DomainAction values that start a hostname's way to `active`.
STARTS = frozenset({"request", "replace"})
OK = "ok"


class AuditFact(Protocol):
    """What the series read from an audit row (db.service.AuditEntry has these)."""

    @property
    def occurred_at(self) -> datetime: ...
    @property
    def tenant_id(self) -> UUID: ...
    @property
    def action(self) -> str: ...
    @property
    def domain(self) -> str | None: ...
    @property
    def status_before(self) -> DomainStatus | None: ...
    @property
    def status_after(self) -> DomainStatus | None: ...
    @property
    def outcome(self) -> str: ...


@dataclass(frozen=True, kw_only=True)
class TimeToActive:
    tenant_id: UUID
    domain: str
    requested_at: datetime
    active_at: datetime

    @property
    def seconds(self) -> float:
        return (self.active_at - self.requested_at).total_seconds()


@dataclass(frozen=True, kw_only=True)
class DayCounts:
    day: date
    counts: dict[DomainStatus, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _by_tenant(entries: Iterable[AuditFact]) -> dict[UUID, list[AuditFact]]:
    grouped: dict[UUID, list[AuditFact]] = defaultdict(list)
    for entry in entries:
        grouped[entry.tenant_id].append(entry)
    for rows in grouped.values():
        rows.sort(key=lambda e: e.occurred_at)  # stable: same-instant rows keep their order
    return grouped


def _transitions(rows: Sequence[AuditFact]) -> list[AuditFact]:
    """The rows that set a status (refused, noop and read rows do not)."""
    return [e for e in rows if e.outcome == OK and e.status_after is not None]


def time_to_active(entries: Iterable[AuditFact]) -> list[TimeToActive]:
    """Per hostname that reached `active`: from its (latest) request to its first `active`.

    A request or replace starts the clock; disabling stops it without a result;
    a domain that is active already and is re-checked does not count again.
    Oldest first, by when it became active.
    """
    found: list[TimeToActive] = []
    for tenant, rows in _by_tenant(entries).items():
        started: tuple[str, datetime] | None = None
        for e in _transitions(rows):
            if e.action in STARTS and e.status_after is DomainStatus.PENDING_DNS:
                started = (e.domain or "", e.occurred_at)
            elif e.status_after is DomainStatus.DISABLED:
                started = None
            elif (
                e.status_after is DomainStatus.ACTIVE
                and e.status_before is not DomainStatus.ACTIVE
                and started is not None
            ):
                domain, at = started
                found.append(
                    TimeToActive(
                        tenant_id=tenant,
                        domain=e.domain or domain,
                        requested_at=at,
                        active_at=e.occurred_at,
                    )
                )
                started = None
    return sorted(found, key=lambda t: (t.active_at, str(t.tenant_id)))


def _utc_day(moment: datetime) -> date:
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def status_per_day(entries: Iterable[AuditFact], *, first: date, last: date) -> list[DayCounts]:
    """For each day from `first` to `last` (UTC): domains per status at the end of that day.

    A tenant counts from its first transition on; its status on a day is the
    `status_after` of its last transition up to that day's end.
    """
    if last < first:
        return []
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    counts = [dict.fromkeys(DomainStatus, 0) for _ in days]
    for rows in _by_tenant(entries).values():
        changes = [(_utc_day(e.occurred_at), e.status_after) for e in _transitions(rows)]
        index = 0
        current: DomainStatus | None = None
        for n, day in enumerate(days):
            while index < len(changes) and changes[index][0] <= day:
                current = changes[index][1]
                index += 1
            if current is not None:
                counts[n][current] += 1
    return [DayCounts(day=day, counts=c) for day, c in zip(days, counts, strict=True)]
