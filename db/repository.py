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

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from core.status import DomainStatus
from db.models import PortalDomain, PortalDomainAudit


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
    """The tenant whose row claims `host`, if any."""
    return session.scalars(
        select(PortalDomain.tenant_id).where(PortalDomain.domain == host)
    ).one_or_none()


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
