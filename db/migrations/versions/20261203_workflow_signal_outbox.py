"""A transactional outbox for workflow signals: portal_domain_outbox.

Revision ID: 7b2d4c9e1a30
Revises: f5e6033408c5
Create Date: 2026-12-03

Each change to a domain writes a row here in its own transaction; the
dispatcher (reconciler/outbox.py) signals-with-start the tenant's workflow and
deletes the row, retrying with backoff while Temporal is slow or down. The API
no longer talks to Temporal inside a request.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "7b2d4c9e1a30"
down_revision: str | None = "f5e6033408c5"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "portal_domain_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("signal", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "signal IN ('refresh', 'remove')", name="ck_portal_domain_outbox_signal"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_portal_domain_outbox"),
    )
    op.create_index(
        "ix_portal_domain_outbox_next_attempt_at", "portal_domain_outbox", ["next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("portal_domain_outbox")
