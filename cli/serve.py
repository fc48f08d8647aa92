"""`portal-domains serve` (the REST API under uvicorn) and `portal-domains token` (dev tokens).

Both read the API settings (PORTAL_DOMAINS_JWT_*, PORTAL_DOMAINS_EDITION, ...;
see api/settings.py) on top of the process Settings.
"""

from __future__ import annotations

import argparse
import logging
import re

import uvicorn

from api.app import create_app
from api.auth import mint_dev_token
from api.settings import ApiSettings
from api.web import WebSettings
from cli import output
from cli.exit_codes import CliError, ExitCode
from core.canonical import TenantIdError, parse_tenant_id
from core.settings import Settings
from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory
from reconciler.outbox import BackgroundDispatcher
from reconciler.wiring import signal_dispatcher, workflow_hook

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the tenant-facing REST API (/api/settings/client-portal/domain)",
        description=(
            "Serve the REST API with uvicorn on the database named by "
            "PORTAL_DOMAINS_DATABASE_URL. Tokens are verified with PORTAL_DOMAINS_JWT_KEY (or "
            "_KEY_FILE) and PORTAL_DOMAINS_JWT_ALGORITHM; PORTAL_DOMAINS_EDITION=enterprise "
            "enables changes. With PORTAL_DOMAINS_START_WORKFLOWS=on (the default) every change "
            "starts or signals the tenant's Temporal workflow."
        ),
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"bind address ({DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    serve.set_defaults(handler=cmd_serve)

    token = sub.add_parser(
        "token",
        help="mint a development bearer token with the configured HS256 secret",
        description=(
            "Print a JWT for the REST API, signed with PORTAL_DOMAINS_JWT_KEY (HS256 only: with "
            "RS256/ES256 tokens come from your identity provider). For local use and the "
            "README examples."
        ),
    )
    token.add_argument(
        "--tenant", help="the tenant id (UUID); required except for the operator role"
    )
    token.add_argument(
        "--role", required=True, help="tenant_admin, tenant_member, platform_operator, ..."
    )
    token.add_argument("--subject", default="dev", help="the sub claim (default: dev)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (3600)")
    token.set_defaults(handler=cmd_token)


_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])(?:token|access_token|csrf_token)=)[^&\s]*")


class RedactQueryTokens(logging.Filter):
    """Replaces token values in the request path of uvicorn's access log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], _TOKEN_IN_QUERY.sub(r"\1***", args[2]), *args[3:])
        return True


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.port <= 65535:
        raise CliError(f"--port {args.port} is out of range (1-65535)", ExitCode.INVALID_INPUT)
    api = ApiSettings.from_env()
    web = WebSettings.from_env(api)
    try:
        migrate.require_current_schema(settings.database_url)
    except migrate.SchemaNotReady as exc:
        raise CliError(str(exc)) from exc
    engine = make_engine(settings.database_url)
    # Changes queue their workflow signal in their own transaction (the outbox); a
    # dispatcher thread with one shared client delivers it, so no request waits
    # for Temporal (slow, down or unreachable).
    dispatchers: list[BackgroundDispatcher] = []  # bound once the service exists

    def wake_dispatcher() -> None:
        for dispatcher in dispatchers:
            dispatcher.nudge()

    service = DomainService(
        make_session_factory(engine),
        base_domain=settings.base_domain,
        on_committed=workflow_hook(settings, deliver=wake_dispatcher)
        if settings.start_workflows
        else None,
        outbox=settings.start_workflows,
    )
    background = None
    if settings.start_workflows:
        background = BackgroundDispatcher(signal_dispatcher(settings, service))
        dispatchers.append(background)
        background.start()
    app = create_app(settings=settings, api=api, service=service, web=web)
    output.progress(
        f"serving the REST API and /portal/settings/domain on http://{args.host}:{args.port} "
        f"({api.edition} edition, "
        f"{api.jwt_algorithm} tokens, workflows {'on' if background else 'off'}); "
        "Ctrl-C stops it"
    )
    # The handover URL carries a (short-lived, single-use) token in its query string:
    # the access log shows the path without it.
    logging.getLogger("uvicorn.access").addFilter(RedactQueryTokens())
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="debug" if getattr(args, "verbose", False) else "info",
            server_header=False,
            # X-Forwarded-For/-Proto only from the proxies PORTAL_DOMAINS_API_FORWARDED_ALLOW_IPS
            # names; uvicorn would otherwise trust 127.0.0.1 (or $FORWARDED_ALLOW_IPS).
            proxy_headers=api.proxy_headers,
            forwarded_allow_ips=list(api.forwarded_allow_ips) or None,
        )
    finally:
        if background is not None:
            background.stop()
        engine.dispose()
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    api = ApiSettings.from_env()
    if api.jwt_algorithm != "HS256":
        raise CliError(
            f"PORTAL_DOMAINS_JWT_ALGORITHM is {api.jwt_algorithm}: only HS256 tokens can be "
            "minted here; get tokens from your identity provider",
            ExitCode.INVALID_INPUT,
        )
    tenant = None
    if args.tenant:
        try:
            tenant = parse_tenant_id(str(args.tenant))
        except TenantIdError as exc:
            raise CliError(f"{exc.code}: {exc}", ExitCode.INVALID_INPUT) from exc
    elif args.role != api.roles.operator:
        raise CliError(f"--tenant is required for role {args.role!r}", ExitCode.INVALID_INPUT)
    try:
        token = mint_dev_token(
            api, subject=args.subject, role=args.role, tenant_id=tenant, ttl_seconds=args.ttl
        )
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.INVALID_INPUT) from exc
    output.line(token)
    return 0
