"""Only verified domains hold their hostname: a partial unique index replaces UNIQUE (domain).

Revision ID: f5e6033408c5
Revises: 5c1f0e7a9d21
Create Date: 2026-12-02

Before, `portal_domains.domain` was unique over all rows, so a tenant could block
a hostname it can never verify just by requesting it first, and a disabled row
kept its hostname forever. Now only rows whose DNS is verified and which are not
disabled (pending_certificate, certificate_issuing, certificate_failed,
deploying, active) hold their hostname: a partial unique index over those rows.
Rows in pending_dns, verifying_dns, dns_failed or disabled may share a hostname.

The index stays case-insensitive: on PostgreSQL the column is CITEXT, on SQLite
an index uses the column's NOCASE collation. SQLite cannot drop a table
constraint, so the UNIQUE constraint goes in batch mode: the table is copied
from its reflection, and reflection loses `COLLATE NOCASE`, so the two hostname
columns are spelled out for the copy (a test checks both stay case-insensitive).

Downgrade restores UNIQUE (domain) over all rows. If two rows share a hostname
by then (which upgrade allows), it refuses with an error naming the hostnames
rather than choosing whose row to delete: disable/purge or replace the extra
claims first, then downgrade again. The migration runs in one transaction, so a
refused downgrade leaves the schema as it was.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "f5e6033408c5"
down_revision: str | None = "5c1f0e7a9d21"
branch_labels: str | None = None
depends_on: str | None = None

HOLDING_STATUSES = (
    "active",
    "certificate_failed",
    "certificate_issuing",
    "deploying",
    "pending_certificate",
)
HELD_DOMAIN_INDEX = "uq_portal_domains_domain_held"
UNIQUE_DOMAIN = "uq_portal_domains_domain"


def _holding_predicate() -> sa.TextClause:
    return sa.text("status IN (" + ", ".join(f"'{s}'" for s in HOLDING_STATUSES) + ")")


def _hostname_columns() -> tuple[sa.Column[str], ...]:
    # Only used when SQLite recreates the table; PostgreSQL alters it in place.
    return (
        sa.Column("domain", sa.String(253, collation="NOCASE"), nullable=False),
        sa.Column("canonical_host", sa.String(253, collation="NOCASE"), nullable=False),
    )


def upgrade() -> None:
    with op.batch_alter_table("portal_domains", reflect_args=_hostname_columns()) as batch:
        batch.drop_constraint(UNIQUE_DOMAIN, type_="unique")
    op.create_index(
        HELD_DOMAIN_INDEX,
        "portal_domains",
        ["domain"],
        unique=True,
        postgresql_where=_holding_predicate(),
        sqlite_where=_holding_predicate(),
    )


class SharedHostnames(RuntimeError):
    """Downgrade refused: several rows claim one hostname, which UNIQUE (domain) forbids."""


def downgrade() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT domain FROM portal_domains GROUP BY domain HAVING COUNT(*) > 1"
                " ORDER BY domain"
            )
        )
        .scalars()
        .all()
    )
    if shared:
        more = f" and {len(shared) - 10} more" if len(shared) > 10 else ""
        shown = ", ".join(shared[:10]) + more
        raise SharedHostnames(
            f"cannot downgrade below {revision}: {len(shared)} hostname(s) are claimed by more "
            f"than one tenant ({shown}), which the old UNIQUE (domain) constraint forbids. "
            "Purge or replace the extra claims first (the schema is unchanged)."
        )
    op.drop_index(HELD_DOMAIN_INDEX, "portal_domains")
    with op.batch_alter_table("portal_domains", reflect_args=_hostname_columns()) as batch:
        batch.create_unique_constraint(UNIQUE_DOMAIN, ["domain"])
