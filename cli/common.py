"""Helpers shared by the command groups: flags, the database URL as shown, failure mapping."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from cli.exit_codes import CliError, ExitCode
from core.errors import PortalDomainsError
from core.settings import Settings

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
