"""Run the Alembic migrations programmatically, from any working directory.

The migrations folder is found next to this file; no alembic.ini is needed.
Each call opens its own engine (db.session.make_engine, so SQLite gets the same
pragmas as the application) and runs inside one transaction: on PostgreSQL and
SQLite a failed migration leaves the schema as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from core.errors import ErrorKind, PortalDomainsError
from db.session import make_engine, sqlite_file

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaNotReady(PortalDomainsError, RuntimeError):
    """The database has no schema, or an older one than this code needs."""

    code = "schema_not_ready"
    kind = ErrorKind.UNAVAILABLE


@dataclass(frozen=True, kw_only=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # New revisions are named YYYYMMDD_<slug>.py like the existing ones.
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(slug)s")
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def upgrade(url: str, revision: str = "head") -> None:
    logger.info("migrating database up to %s", revision)
    _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    logger.info("migrating database down to %s", revision)
    _run(url, lambda config: command.downgrade(config, revision))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_state(url: str) -> SchemaState:
    """Where the database's schema is, without creating anything.

    A SQLite URL whose file does not exist yet counts as "no schema" (connecting
    would create an empty file).
    """
    head = head_revision()
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return SchemaState(current=None, head=head)
    engine = make_engine(url)
    try:
        return SchemaState(current=current_revision(engine), head=head)
    finally:
        engine.dispose()


def require_current_schema(url: str) -> None:
    """Raise SchemaNotReady with the command to run unless the schema is at head."""
    state = schema_state(url)
    if state.current is None:
        raise SchemaNotReady(
            "the database has no portal-domains schema: run `portal-domains db upgrade`"
        )
    if not state.up_to_date:
        raise SchemaNotReady(
            f"the database schema is at revision {state.current} but this code needs "
            f"{state.head}: run `portal-domains db upgrade`"
        )


def _run(url: str, step: Callable[[Config], None]) -> None:
    config = alembic_config(url)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config)
    finally:
        engine.dispose()
