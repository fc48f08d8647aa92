"""`portal-domains db ...`: Alembic schema migrations (PostgreSQL or SQLite)."""

from __future__ import annotations

import argparse
import os

from cli import output
from cli.common import display_url, guarded, json_flag
from cli.exit_codes import CliError, ExitCode
from core.settings import Settings
from db import migrate, roles

# Read only here, never taken on the command line (it would show in `ps` and shell history).
APP_PASSWORD_ENV = "PORTAL_DOMAINS_DB_APP_PASSWORD"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="database schema migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")

    up = db_sub.add_parser("upgrade", help="migrate the database schema up (default: latest)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.add_argument(
        "--create-roles",
        action="store_true",
        help="PostgreSQL: create (if missing) an owner role that runs the migrations and owns"
        " the tables, and an application role for the service that may only INSERT and"
        f" SELECT audit rows; its password is taken from ${APP_PASSWORD_ENV} when set",
    )
    up.add_argument(
        "--owner-role",
        help=f"with --create-roles: the owner role (default: {roles.DEFAULT_OWNER_ROLE})",
    )
    up.add_argument(
        "--app-role",
        help=f"with --create-roles: the service's role (default: {roles.DEFAULT_APP_ROLE})",
    )
    json_flag(up)
    up.set_defaults(handler=guarded(_cmd_db_upgrade))

    down = db_sub.add_parser("downgrade", help="migrate the database schema down")
    down.add_argument(
        "--revision", required=True, help="target revision ('base' removes every table)"
    )
    json_flag(down)
    down.set_defaults(handler=guarded(_cmd_db_downgrade))


def _cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    if not args.create_roles:
        if args.owner_role or args.app_role:
            raise CliError(
                "--owner-role and --app-role need --create-roles", ExitCode.INVALID_INPUT
            )
        migrate.upgrade(settings.database_url, args.revision)
        return _report_schema(args, settings)
    names = roles.RoleNames(
        owner=args.owner_role or roles.DEFAULT_OWNER_ROLE,
        app=args.app_role or roles.DEFAULT_APP_ROLE,
    )
    report = roles.upgrade_with_roles(
        settings.database_url,
        args.revision,
        names,
        app_password=os.environ.get(APP_PASSWORD_ENV) or None,
    )
    if not args.json:
        created = ", ".join(report.created) or "none"
        password = "set" if report.app_password_set else f"unchanged (${APP_PASSWORD_ENV} unset)"
        output.line(
            f"roles: owner {report.owner}, application {report.app} (created: {created};"
            f" application password {password})"
        )
    return _report_schema(args, settings, extra={"roles": report.to_json()})


def _cmd_db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    migrate.downgrade(settings.database_url, args.revision)
    return _report_schema(args, settings)


def _report_schema(
    args: argparse.Namespace, settings: Settings, *, extra: dict[str, object] | None = None
) -> int:
    state = migrate.schema_state(settings.database_url)
    database = display_url(settings.database_url)
    if args.json:
        output.emit_json(
            {
                "database": database,
                "revision": state.current,
                "head": state.head,
                "up_to_date": state.up_to_date,
                **(extra or {}),
            }
        )
    else:
        where = "latest" if state.up_to_date else f"latest is {state.head}"
        output.line(f"{database}: schema at revision {state.current or 'base (empty)'} ({where})")
    return 0
