"""Stack run records in the database: the shared store for a shared Pulumi backend.

Implements stack.run_records.RunRecords over `portal_domain_stack_runs`, so that
every worker of an environment (on any host) sees the same record of each
shard's last successful run. See stack/run_records.py for what a record vouches
for and when it is forgotten.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from core.digest import RecordedRun, StateObjects, valid_objects
from db.models import PortalDomainStackRun


class DbRunRecords:
    shared = True

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def load(self, stack: str) -> tuple[RecordedRun, StateObjects | None] | None:
        with self._sessions() as session:
            row = session.scalar(
                select(PortalDomainStackRun).where(PortalDomainStackRun.stack == stack)
            )
            if row is None:
                return None
            run = RecordedRun.from_json(
                {"digest": row.digest, "full_pass_at": row.full_pass_at.isoformat()}
            )
            if run is None:
                return None
            return run, valid_objects(row.objects)

    def save(self, stack: str, run: RecordedRun, objects: StateObjects | None) -> None:
        with self._sessions.begin() as session:
            row = session.get(PortalDomainStackRun, stack, with_for_update=True)
            if row is None:
                row = PortalDomainStackRun(stack=stack)
                session.add(row)
            row.digest = run.digest
            row.full_pass_at = run.full_pass_at
            row.objects = objects
            row.updated_at = datetime.now(UTC)

    def forget(self, stack: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(PortalDomainStackRun).where(PortalDomainStackRun.stack == stack))
