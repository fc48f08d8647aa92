"""Create portal_domains and the append-only portal_domain_audit.

Revision ID: 5c1f0e7a9d21
Revises:
Create Date: 2026-11-30

PostgreSQL: CITEXT hostnames (extension created if missing, never dropped: other
schemas may use it), JSONB, native enums `portal_domain_status` and
`portal_domain_verification_method`, a trigger function rejecting UPDATE/DELETE
on the audit table. SQLite: `COLLATE NOCASE` hostnames, JSON text, CHECK
constraints for the enums, and RAISE(ABORT) triggers for the audit table.

The schema is spelled out literally rather than imported from db.models, so
this file keeps meaning the same thing when the models change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5c1f0e7a9d21"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

STATUSES = (
    "pending_dns",
    "verifying_dns",
    "dns_failed",
    "pending_certificate",
    "certificate_issuing",
    "certificate_failed",
    "deploying",
    "active",
    "disabled",
)
VERIFICATION_METHODS = ("cname",)
AUDIT_OUTCOMES = ("ok", "noop", "denied", "rejected", "conflict", "not_found")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    hostname: sa.types.TypeEngine[str]
    status: sa.types.TypeEngine[str]
    method: sa.types.TypeEngine[str]
    json: sa.types.TypeEngine[object]
    enum_checks: list[sa.CheckConstraint] = []
    if postgres:
        op.execute("CREATE EXTENSION IF NOT EXISTS citext")
        status_enum = postgresql.ENUM(*STATUSES, name="portal_domain_status", create_type=False)
        method_enum = postgresql.ENUM(
            *VERIFICATION_METHODS, name="portal_domain_verification_method", create_type=False
        )
        status_enum.create(bind, checkfirst=True)
        method_enum.create(bind, checkfirst=True)
        hostname, status, method = postgresql.CITEXT(), status_enum, method_enum
        json = postgresql.JSONB()
    else:
        hostname = sa.String(253, collation="NOCASE")
        status, method = sa.String(32), sa.String(16)
        json = sa.JSON()
        enum_checks = [
            sa.CheckConstraint(
                _in_list("status", STATUSES),
                name=op.f("ck_portal_domains_portal_domain_status"),
            ),
            sa.CheckConstraint(
                _in_list("verification_method", VERIFICATION_METHODS),
                name=op.f("ck_portal_domains_portal_domain_verification_method"),
            ),
        ]

    op.create_table(
        "portal_domains",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("domain", hostname, nullable=False),
        sa.Column("canonical_prefix", sa.String(32), nullable=False),
        sa.Column("canonical_host", hostname, nullable=False),
        sa.Column("status", status, nullable=False),
        sa.Column("status_message", sa.Text(), server_default="", nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verification_method", method, server_default="cname", nullable=False),
        sa.Column("verification_details", json, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("certificate_secret_name", sa.String(253), nullable=False),
        sa.Column("last_synced_resource_version", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_domains")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_portal_domains_tenant_id")),
        sa.UniqueConstraint("domain", name=op.f("uq_portal_domains_domain")),
        sa.UniqueConstraint("canonical_prefix", name=op.f("uq_portal_domains_canonical_prefix")),
        sa.UniqueConstraint("canonical_host", name=op.f("uq_portal_domains_canonical_host")),
        sa.UniqueConstraint(
            "certificate_secret_name", name=op.f("uq_portal_domains_certificate_secret_name")
        ),
        *enum_checks,
    )
    op.create_index("ix_portal_domains_status", "portal_domains", ["status"])

    op.create_table(
        "portal_domain_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("domain", sa.Text(), nullable=True),
        sa.Column("status_before", sa.String(32), nullable=True),
        sa.Column("status_after", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", json, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_domain_audit")),
        sa.CheckConstraint(
            _in_list("outcome", AUDIT_OUTCOMES), name=op.f("ck_portal_domain_audit_outcome")
        ),
    )
    op.create_index(
        "ix_portal_domain_audit_tenant_id_occurred_at",
        "portal_domain_audit",
        ["tenant_id", "occurred_at"],
    )

    if postgres:
        op.execute(
            """
            CREATE FUNCTION portal_domain_audit_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'portal_domain_audit is append-only (% refused)', TG_OP;
            END
            $$
            """
        )
        op.execute(
            """
            CREATE TRIGGER portal_domain_audit_append_only
            BEFORE UPDATE OR DELETE ON portal_domain_audit
            FOR EACH ROW EXECUTE FUNCTION portal_domain_audit_append_only()
            """
        )
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"""
                CREATE TRIGGER portal_domain_audit_no_{operation.lower()}
                BEFORE {operation} ON portal_domain_audit
                BEGIN
                    SELECT RAISE(ABORT, 'portal_domain_audit is append-only ({operation} refused)');
                END
                """
            )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_portal_domain_audit_tenant_id_occurred_at", "portal_domain_audit")
    op.drop_table("portal_domain_audit")  # drops its triggers with it
    op.drop_index("ix_portal_domains_status", "portal_domains")
    op.drop_table("portal_domains")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS portal_domain_audit_append_only()")
        op.execute("DROP TYPE IF EXISTS portal_domain_verification_method")
        op.execute("DROP TYPE IF EXISTS portal_domain_status")
