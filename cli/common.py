"""Helpers shared by the command groups: flags, the database URL as shown, failure mapping."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from cli import output
from cli.exit_codes import CliError, ExitCode
from core.errors import PortalDomainsError
from core.settings import Settings
from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory
from reconciler.wiring import signal_dispatcher, workflow_hook

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


# `kind:name`, e.g. operator:alice or ticket:OPS-42; a bare name means operator:<name>.
_ACTOR = re.compile(r"(?:[a-z][a-z0-9_-]{0,31}:)?[A-Za-z0-9][A-Za-z0-9._@+/-]{0,127}")
# Kinds the API and the reconciler write: an operator must not pose as a tenant's user.
RESERVED_ACTOR_KINDS = frozenset({"user", "anonymous", "reconciler"})


def parse_actor(raw: str) -> str:
    """The audit actor `--actor` names (argparse type): refused if it could pose as another."""
    if not _ACTOR.fullmatch(raw):
        raise argparse.ArgumentTypeError(
            f"{raw[:80]!r} is not an actor: use NAME or KIND:NAME (letters, digits, . _ @ + / -; "
            "e.g. alice or ticket:OPS-42)"
        )
    kind, sep, _ = raw.partition(":")
    if not sep:
        return f"operator:{raw}"
    if kind in RESERVED_ACTOR_KINDS:
        raise argparse.ArgumentTypeError(
            f"{kind}: is recorded by the API and the reconciler only; an operator records as "
            "operator:NAME or another KIND:NAME"
        )
    return raw


def actor_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor",
        type=parse_actor,
        help="who to record in the audit log: NAME (operator:NAME) or KIND:NAME "
        "(default: operator:$USER)",
    )


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
def operator_service(settings: Settings, *, deliver: bool = True) -> Iterator[DomainService]:
    """The domain service for a CLI command; changes start workflows when configured."""
    migrate.require_current_schema(settings.database_url)
    engine = make_engine(settings.database_url)
    service = DomainService(
        make_session_factory(engine),
        base_domain=settings.base_domain,
        on_committed=workflow_hook(settings) if settings.start_workflows else None,
        outbox=settings.start_workflows,
    )
    try:
        yield service
        if settings.start_workflows and deliver:
            _deliver_queued_signals(settings, service)
    finally:
        engine.dispose()


def _deliver_queued_signals(settings: Settings, service: DomainService) -> None:
    """One outbox pass before the command ends, so the workflow starts right away.

    The change is saved and its signal queued whatever happens here; if Temporal
    does not answer within a few seconds, the worker's dispatcher delivers it.
    """
    if not service.due_signals(limit=1):
        return
    report = asyncio.run(
        signal_dispatcher(settings, service, connect_timeout=3, rpc_timeout=3).dispatch_once()
    )
    if report.error:
        output.progress(
            f"saved; the workflow signal is queued ({report.error}); "
            "`portal-domains worker` delivers it when Temporal answers"
        )
