"""SQLAlchemy models: the `portal_domains` table and its append-only audit log.

Both run on PostgreSQL (production: CITEXT, JSONB, native enums) and SQLite (the
embedded default). Column types that differ per dialect are declared once here
with `with_variant`; the Alembic migrations spell the same schema out literally
so that history does not change when this module does (a test compares them).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import CITEXT, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from core.hostnames import MAX_HOSTNAME_LENGTH
from core.status import DEPLOYABLE, DomainStatus

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AUDIT_OUTCOMES: tuple[str, ...] = ("ok", "noop", "denied", "rejected", "conflict", "not_found")

# Statuses in which a row holds its hostname exclusively: DNS is verified and the
# row is not disabled (the same set as core.status.DEPLOYABLE). Rows in
# pending_dns, verifying_dns, dns_failed or disabled only claim it, and several
# tenants may claim one hostname at once; the partial unique index
# HELD_DOMAIN_INDEX admits at most one holder per hostname.
HOLDING_STATUSES: frozenset[DomainStatus] = DEPLOYABLE
HELD_DOMAIN_INDEX = "uq_portal_domains_domain_held"


def _holding_predicate() -> str:
    values = ", ".join(f"'{s.value}'" for s in sorted(HOLDING_STATUSES))
    return f"status IN ({values})"


class VerificationMethod(StrEnum):
    CNAME = "cname"


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; on SQLite (no time zones) UTC stored naive.

    Values are always timezone-aware UTC in Python, whichever database they
    came from; a naive datetime is refused rather than guessed at.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def case_insensitive_hostname() -> TypeEngine[str]:
    """CITEXT on PostgreSQL, `VARCHAR COLLATE NOCASE` on SQLite.

    Stored names are already lowercase ASCII; the case-insensitive type makes
    the unique index on held hostnames hold even for a row written by some
    other path.
    """
    return (
        String(MAX_HOSTNAME_LENGTH)
        .with_variant(CITEXT(), "postgresql")
        .with_variant(String(MAX_HOSTNAME_LENGTH, collation="NOCASE"), "sqlite")
    )


def json_document() -> TypeEngine[Any]:
    return JSON().with_variant(JSONB(), "postgresql")


def _enum_values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PortalDomain(Base):
    __tablename__ = "portal_domains"
    __table_args__ = (
        Index("ix_portal_domains_status", "status"),
        # Case-insensitive like the column itself: CITEXT on PostgreSQL, and on
        # SQLite an index uses the column's NOCASE collation.
        Index(
            HELD_DOMAIN_INDEX,
            "domain",
            unique=True,
            postgresql_where=text(_holding_predicate()),
            sqlite_where=text(_holding_predicate()),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid(), unique=True)
    # Not unique on its own: only holders are exclusive (HELD_DOMAIN_INDEX).
    domain: Mapped[str] = mapped_column(case_insensitive_hostname())
    canonical_prefix: Mapped[str] = mapped_column(String(32), unique=True)
    canonical_host: Mapped[str] = mapped_column(case_insensitive_hostname(), unique=True)
    status: Mapped[DomainStatus] = mapped_column(
        Enum(
            DomainStatus,
            name="portal_domain_status",
            values_callable=_enum_values,
            create_constraint=True,
            length=32,
        )
    )
    status_message: Mapped[str] = mapped_column(Text(), default="", server_default="")
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verification_method: Mapped[VerificationMethod] = mapped_column(
        Enum(
            VerificationMethod,
            name="portal_domain_verification_method",
            values_callable=_enum_values,
            create_constraint=True,
            length=16,
        ),
        default=VerificationMethod.CNAME,
        server_default=VerificationMethod.CNAME.value,
    )
    verification_details: Mapped[dict[str, Any]] = mapped_column(
        json_document(), default=dict, server_default=text("'{}'")
    )
    certificate_secret_name: Mapped[str] = mapped_column(String(253), unique=True)
    last_synced_resource_version: Mapped[str | None] = mapped_column(Text())
    version: Mapped[int] = mapped_column(Integer(), default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    # Every ORM flush of a row checks and bumps `version`; the conditional
    # UPDATEs in db.service bump it explicitly.
    __mapper_args__ = {"version_id_col": version}


class PortalDomainAudit(Base):
    """Who did what to which tenant's domain, including refused attempts.

    Append-only: the migration installs triggers that reject UPDATE and DELETE.
    Statuses are plain text here so old rows stay readable if the enum changes.
    """

    __tablename__ = "portal_domain_audit"
    __table_args__ = (
        Index("ix_portal_domain_audit_tenant_id_occurred_at", "tenant_id", "occurred_at"),
        CheckConstraint(
            "outcome IN (" + ", ".join(f"'{o}'" for o in AUDIT_OUTCOMES) + ")", name="outcome"
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    action: Mapped[str] = mapped_column(String(32))
    domain: Mapped[str | None] = mapped_column(Text())
    status_before: Mapped[str | None] = mapped_column(String(32))
    status_after: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(json_document())


class PortalDomainOutbox(Base):
    """Workflow signals still to deliver: written in the transaction of the change.

    A change to a domain (request, replace, refresh, disable, expiry, import) adds
    a row here in its own transaction; a dispatcher (reconciler.outbox) delivers
    it to Temporal with one shared client and deletes it. So an API request never
    waits for Temporal, and a process dying between commit and start loses
    nothing: the row is still here for the next dispatcher pass.
    """

    __tablename__ = "portal_domain_outbox"
    __table_args__ = (
        Index("ix_portal_domain_outbox_next_attempt_at", "next_attempt_at"),
        CheckConstraint("signal IN ('refresh', 'remove')", name="signal"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    signal: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer(), default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text())


class PortalDomainStackRun(Base):
    """Each Pulumi stack's last successful run, shared by every worker.

    Used with a shared Pulumi backend (db.run_records): the digest of what the
    run declared, when the last full pass ran, and the state objects after it,
    so any worker can skip an unchanged shard and still export its files. A row
    is deleted before any run that may change its stack.
    """

    __tablename__ = "portal_domain_stack_runs"

    stack: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    full_pass_at: Mapped[datetime] = mapped_column(UTCDateTime())
    objects: Mapped[list[Any] | None] = mapped_column(json_document())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
