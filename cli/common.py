"""Helpers shared by the command groups: flags, the database URL as shown, failure mapping."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from cli.exit_codes import CliError, ExitCode
from core.errors import PortalDomainsError
from core.settings import Settings
from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory
from reconciler.wiring import workflow_hook

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, Settings], int]


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def guarded(handler: Handler) -> Handler:
    """Turn the expected failures of the service layers into one-line CLI errors."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return handler(args, settings)
        except PortalDomainsError as exc:
            raise CliError.from_error(exc) from exc
        except CommandError as exc:
            raise CliError(f"migration failed: {exc}", ExitCode.FAILED) from exc
        except ArgumentError as exc:
            raise CliError(
                f"PORTAL_DOMAINS_DATABASE_URL is not a usable database URL: {exc}",
                ExitCode.INVALID_INPUT,
            ) from exc
        except SQLAlchemyError as exc:
            logger.debug("database error", exc_info=True)
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise CliError(
                f"database error on {display_url(settings.database_url)}: {first_line}",
                ExitCode.UNAVAILABLE,
            ) from exc

    return run


def display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def actor_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", help="who to record in the audit log (default: operator:$USER)")


def actor_of(args: argparse.Namespace) -> str:
    """The audit actor of a CLI change: --actor, else `operator:$USER`."""
    if args.actor:
        return str(args.actor)
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except OSError:  # no passwd entry (containers)
            user = f"uid{os.getuid()}"
    return f"operator:{user}"


@contextmanager
def operator_service(settings: Settings) -> Iterator[DomainService]:
    """The domain service for a CLI command; changes start workflows when configured."""
    migrate.require_current_schema(settings.database_url)
    engine = make_engine(settings.database_url)
    hook = None
    if settings.start_workflows:
        hook = workflow_hook(settings)
    try:
        yield DomainService(
            make_session_factory(engine), base_domain=settings.base_domain, on_committed=hook
        )
    finally:
        engine.dispose()
