"""`portal-domains db ...`: Alembic schema migrations (PostgreSQL or SQLite)."""

from __future__ import annotations

import argparse

from cli import output
from cli.common import display_url, guarded, json_flag
from core.settings import Settings
from db import migrate


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="database schema migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")

    up = db_sub.add_parser("upgrade", help="migrate the database schema up (default: latest)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    json_flag(up)
    up.set_defaults(handler=guarded(_cmd_db_upgrade))

    down = db_sub.add_parser("downgrade", help="migrate the database schema down")
    down.add_argument(
        "--revision", required=True, help="target revision ('base' removes every table)"
    )
    json_flag(down)
    down.set_defaults(handler=guarded(_cmd_db_downgrade))


def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    migrate.upgrade(settings.database_url, args.revision)
    return _report_schema(args, settings)


def _cmd_db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    migrate.downgrade(settings.database_url, args.revision)
    return _report_schema(args, settings)


def _report_schema(args: argparse.Namespace, settings: Settings) -> int:
    state = migrate.schema_state(settings.database_url)
    database = display_url(settings.database_url)
    if args.json:
        output.emit_json(
            {
                "database": database,
                "revision": state.current,
                "head": state.head,
                "up_to_date": state.up_to_date,
            }
        )
    else:
        where = "latest" if state.up_to_date else f"latest is {state.head}"
        output.line(f"{database}: schema at revision {state.current or 'base (empty)'} ({where})")
    return 0
