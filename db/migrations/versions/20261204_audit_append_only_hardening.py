"""Close the two holes left in the append-only audit table: REPLACE and TRUNCATE.

Revision ID: dc856d0418d7
Revises: 7b2d4c9e1a30
Create Date: 2026-12-04

SQLite: `REPLACE INTO` / `INSERT OR REPLACE` with the id of an existing row
deletes that row and inserts another, and a conflict-resolution delete fires no
DELETE trigger, so the UPDATE/DELETE triggers of the first migration never see
it. A BEFORE INSERT trigger now refuses any insert whose id is already taken
(this also stops `INSERT ... ON CONFLICT(id) DO UPDATE` before it gets to the
UPDATE trigger). In a BEFORE INSERT trigger an id SQLite is about to assign
reads as -1, so an AFTER INSERT trigger refuses ids below 1: otherwise one
row written with id -1 would make every later automatic insert look like a
replace of it.

PostgreSQL: TRUNCATE fires no row trigger. A BEFORE TRUNCATE statement trigger
refuses it. The owning role can still disable triggers; db/roles.py runs the
service as a role that owns nothing and may only INSERT and SELECT here.

The schema is spelled out literally rather than imported from db.models.
"""

from __future__ import annotations

from alembic import op

revision: str = "dc856d0418d7"
down_revision: str | None = "7b2d4c9e1a30"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION portal_domain_audit_no_truncate() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'portal_domain_audit is append-only (TRUNCATE refused)';
            END
            $$
            """
        )
        op.execute(
            """
            CREATE TRIGGER portal_domain_audit_no_truncate
            BEFORE TRUNCATE ON portal_domain_audit
            FOR EACH STATEMENT EXECUTE FUNCTION portal_domain_audit_no_truncate()
            """
        )
        return
    op.execute(
        """
        CREATE TRIGGER portal_domain_audit_no_replace
        BEFORE INSERT ON portal_domain_audit
        WHEN EXISTS (SELECT 1 FROM portal_domain_audit WHERE id = NEW.id)
        BEGIN
            SELECT RAISE(ABORT, 'portal_domain_audit is append-only (REPLACE refused)');
        END
        """
    )
    op.execute(
        """
        CREATE TRIGGER portal_domain_audit_positive_id
        AFTER INSERT ON portal_domain_audit
        WHEN NEW.id < 1
        BEGIN
            SELECT RAISE(ABORT, 'portal_domain_audit ids start at 1');
        END
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS portal_domain_audit_no_truncate ON portal_domain_audit")
        op.execute("DROP FUNCTION IF EXISTS portal_domain_audit_no_truncate()")
        return
    op.execute("DROP TRIGGER IF EXISTS portal_domain_audit_positive_id")
    op.execute("DROP TRIGGER IF EXISTS portal_domain_audit_no_replace")
