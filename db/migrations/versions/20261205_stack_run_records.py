"""Each Pulumi stack's last successful run, shared by every worker: portal_domain_stack_runs.

Revision ID: 3e8a1f6c2b47
Revises: dc856d0418d7
Create Date: 2026-12-05

With a shared Pulumi backend (postgres://) several workers run an
environment's shards; the record that lets a reconcile skip an unchanged shard
(and export its files without reading its state) must be shared too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3e8a1f6c2b47"
down_revision: str | None = "dc856d0418d7"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "portal_domain_stack_runs",
        sa.Column("stack", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("full_pass_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "objects", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stack", name="pk_portal_domain_stack_runs"),
    )


def downgrade() -> None:
    op.drop_table("portal_domain_stack_runs")
