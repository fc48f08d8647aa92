"""The SQL of portal_domains: row locking, the conditional status write, prefix lookups.

Functions of a Session, no rules: db.service decides what may change and
audits it; this module only says how to read and write rows safely under
concurrency (FOR UPDATE on PostgreSQL, compare-and-set on status/version).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from core.status import DomainStatus
from db.models import HOLDING_STATUSES, PortalDomain, PortalDomainAudit, PortalDomainOutbox


def row_of(session: Session, tenant_id: UUID) -> PortalDomain | None:
    return session.scalars(
        select(PortalDomain).where(PortalDomain.tenant_id == tenant_id)
    ).one_or_none()


def rows_in(session: Session, statuses: Collection[DomainStatus] | None) -> list[PortalDomain]:
    """Every row, or the rows in `statuses`."""
    query = select(PortalDomain)
    if statuses is not None:
        query = query.where(PortalDomain.status.in_(sorted(set(statuses))))
    return list(session.scalars(query))


def lock_row(session: Session, tenant_id: UUID) -> PortalDomain | None:
    # FOR UPDATE on PostgreSQL; SQLite transactions are serialised by
    # BEGIN IMMEDIATE (db.session) and ignore the clause.
    return session.scalars(
        select(PortalDomain)
        .where(PortalDomain.tenant_id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def holder_of(session: Session, host: str) -> UUID | None:
    """The tenant whose row holds `host` (verified, not disabled), if any.

    At most one: the partial unique index uq_portal_domains_domain_held. Rows
    that merely claim `host` (unverified or disabled) are not holders.
    """
    return session.scalars(
        select(PortalDomain.tenant_id).where(
            PortalDomain.domain == host,
            PortalDomain.status.in_(sorted(HOLDING_STATUSES)),
        )
    ).one_or_none()


def lock_rows_not_updated_since(
    session: Session, statuses: Collection[DomainStatus], cutoff: datetime
) -> list[PortalDomain]:
    """Rows in `statuses` whose updated_at is before `cutoff`, locked, by tenant.

    PostgreSQL re-checks the WHERE clause on rows changed by a concurrent
    transaction before locking them, so a row that moved on is skipped.
    """
    return list(
        session.scalars(
            select(PortalDomain)
            .where(
                PortalDomain.status.in_(sorted(set(statuses))),
                PortalDomain.updated_at < cutoff,
            )
            .order_by(PortalDomain.tenant_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def delete_row(session: Session, row: PortalDomain) -> None:
    """Delete the (locked) row for good; its audit rows stay."""
    result = session.execute(
        delete(PortalDomain)
        .where(PortalDomain.id == row.id)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    assert result.rowcount == 1, f"row {row.id} vanished while locked"
    session.expunge(row)


def prefixes_starting_with(session: Session, head: str) -> set[str]:
    """Canonical prefixes that begin with `head` (the only ones a new prefix can collide with)."""
    return set(
        session.scalars(
            select(PortalDomain.canonical_prefix).where(
                PortalDomain.canonical_prefix.startswith(head, autoescape=True)
            )
        )
    )


def conditional_update(
    session: Session,
    tenant_id: UUID,
    *,
    expected_status: DomainStatus,
    new_status: DomainStatus,
    message: str,
    details: Mapping[str, Any] | None,
    expected_version: int | None,
    now: datetime,
) -> bool:
    """Compare-and-set: write only if the row is still in `expected_status` (and version)."""
    conditions = [PortalDomain.tenant_id == tenant_id, PortalDomain.status == expected_status]
    if expected_version is not None:
        conditions.append(PortalDomain.version == expected_version)
    values: dict[str, Any] = {
        "status_message": message,
        "last_checked_at": now,
        "updated_at": now,
    }
    if details is not None:
        values["verification_details"] = copy.deepcopy(dict(details))
    if expected_status != new_status:
        values["status"] = new_status
        values["version"] = PortalDomain.version + 1
    result = session.execute(
        update(PortalDomain)
        .where(*conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def audit_rows(session: Session, tenant_id: UUID) -> list[PortalDomainAudit]:
    return list(
        session.scalars(
            select(PortalDomainAudit)
            .where(PortalDomainAudit.tenant_id == tenant_id)
            .order_by(PortalDomainAudit.id)
        )
    )


def set_synced_versions(session: Session, versions: Mapping[str, str]) -> int:
    """Store what the cluster held after an apply, per canonical prefix; rows updated."""
    updated = 0
    for prefix, text in versions.items():
        result = session.execute(
            update(PortalDomain)
            .where(PortalDomain.canonical_prefix == prefix)
            .values(last_synced_resource_version=text)
            .execution_options(synchronize_session=False)
        )
        assert isinstance(result, CursorResult)
        updated += result.rowcount
    return updated


# ------------------------------------------------------------------ the outbox


def add_signal(session: Session, tenant_id: UUID, signal: str, now: datetime) -> None:
    session.add(
        PortalDomainOutbox(tenant_id=tenant_id, signal=signal, created_at=now, next_attempt_at=now)
    )


def due_signals(session: Session, now: datetime, limit: int) -> list[PortalDomainOutbox]:
    """Rows of the tenants that have a signal due, oldest tenant first, every row of each.

    A tenant is due when any of its rows is (a new change is not held back by an
    older deferred one); all its rows come back so the
    caller can collapse them into one delivery (the last signal wins).
    """
    due_tenants = (
        select(PortalDomainOutbox.tenant_id)
        .group_by(PortalDomainOutbox.tenant_id)
        .having(func.min(PortalDomainOutbox.next_attempt_at) <= now)
        .order_by(func.min(PortalDomainOutbox.id))
        .limit(limit)
    ).subquery()
    return list(
        session.scalars(
            select(PortalDomainOutbox)
            .where(PortalDomainOutbox.tenant_id.in_(select(due_tenants.c.tenant_id)))
            .order_by(PortalDomainOutbox.id)
        )
    )


def delete_signals(session: Session, tenant_id: UUID, up_to_id: int) -> int:
    result = session.execute(
        delete(PortalDomainOutbox).where(
            PortalDomainOutbox.tenant_id == tenant_id, PortalDomainOutbox.id <= up_to_id
        )
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def defer_signals(
    session: Session, tenant_id: UUID, up_to_id: int, *, retry_at: datetime, error: str
) -> None:
    session.execute(
        update(PortalDomainOutbox)
        .where(PortalDomainOutbox.tenant_id == tenant_id, PortalDomainOutbox.id <= up_to_id)
        .values(
            attempts=PortalDomainOutbox.attempts + 1, next_attempt_at=retry_at, last_error=error
        )
    )


def outbox_rows(session: Session) -> list[PortalDomainOutbox]:
    return list(session.scalars(select(PortalDomainOutbox).order_by(PortalDomainOutbox.id)))
