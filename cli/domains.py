"""`portal-domains domains ...`: validate, request and inspect tenants' vanity hostnames.

The `domains` commands work on the database named by PORTAL_DOMAINS_DATABASE_URL
(Settings.database_url) and refuse to run on a database whose schema is missing
or old, naming the command that fixes it. Operator actions are audited with the
actor `operator:$USER` unless --actor says otherwise.

Exit codes: 0 success, 1 the operation failed (hostname taken, no domain, stale
status, database unreachable), 2 invalid input (hostname, tenant id).
"""

from __future__ import annotations

import argparse
import logging
import textwrap
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

from cli import output
from cli.common import actor_arg, actor_of, guarded, json_flag, operator_service
from cli.exit_codes import CliError, ExitCode
from core.canonical import parse_tenant_id
from core.hostnames import REASON_CODES, HostnameError, normalize_hostname
from core.settings import Settings
from core.status import DomainStatus
from db.service import DomainView

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, Settings], int]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_domains(sub)


# ------------------------------------------------------------------------ parsers


def _register_domains(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    domains = sub.add_parser("domains", help="validate, request and inspect vanity hostnames")
    d_sub = domains.add_subparsers(dest="domains_command", required=True, metavar="COMMAND")

    validate = d_sub.add_parser(
        "validate",
        help="check a hostname and print its normalised form",
        description=(
            "Print the normalised (lowercase ASCII/punycode) form of HOST and exit 0, or "
            "print a reason code and exit 2. Uses PORTAL_DOMAINS_BASE_DOMAIN."
        ),
        epilog=_reason_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("host", metavar="HOST")
    json_flag(validate)
    validate.set_defaults(handler=guarded(_cmd_validate))

    request = d_sub.add_parser(
        "request", help="register or replace a tenant's vanity hostname (idempotent)"
    )
    _tenant_arg(request)
    request.add_argument(
        "--domain", required=True, help="the vanity hostname, e.g. portal.acme.com"
    )
    actor_arg(request)
    json_flag(request)
    request.set_defaults(handler=guarded(_cmd_request))

    status = d_sub.add_parser("status", help="show a tenant's domain and its status")
    _tenant_arg(status)
    json_flag(status)
    status.set_defaults(handler=guarded(_cmd_status))

    audit = d_sub.add_parser(
        "audit", help="show a tenant's audit trail, newest first (every change and refusal)"
    )
    _tenant_arg(audit)
    audit.add_argument(
        "--limit", type=int, default=50, help="at most this many entries (default 50)"
    )
    json_flag(audit)
    audit.set_defaults(handler=guarded(_cmd_audit))

    listing = d_sub.add_parser("list", help="list every tenant's domain")
    listing.add_argument(
        "--status", choices=[s.value for s in DomainStatus], help="only domains in this status"
    )
    json_flag(listing)
    listing.set_defaults(handler=guarded(_cmd_list))

    refresh = d_sub.add_parser(
        "refresh", help="re-check a domain (a failed one restarts at DNS verification)"
    )
    _tenant_arg(refresh)
    actor_arg(refresh)
    json_flag(refresh)
    refresh.set_defaults(handler=guarded(_cmd_refresh))

    disable = d_sub.add_parser("disable", help="disable a tenant's domain (idempotent)")
    _tenant_arg(disable)
    actor_arg(disable)
    json_flag(disable)
    disable.set_defaults(handler=guarded(_cmd_disable))

    purge = d_sub.add_parser(
        "purge",
        help="delete a disabled, removed domain's row for good (audited; the audit stays)",
    )
    _tenant_arg(purge)
    actor_arg(purge)
    json_flag(purge)
    purge.set_defaults(handler=guarded(_cmd_purge))

    expire = d_sub.add_parser(
        "expire",
        help="disable unverified claims (DNS never verified) older than --older-than-hours",
    )
    expire.add_argument(
        "--older-than-hours",
        type=float,
        default=168.0,
        help="age of the claim's last change (default 168 = 7 days)",
    )
    actor_arg(expire)
    json_flag(expire)
    expire.set_defaults(handler=guarded(_cmd_expire))

    signals = d_sub.add_parser(
        "signals",
        help="workflow signals queued in the outbox, not yet delivered to Temporal",
        description="Each change queues its workflow signal with it (the outbox); the worker "
        "and the API server deliver them. What is listed here is waiting for Temporal: "
        "attempts and the last error say why.",
    )
    json_flag(signals)
    signals.set_defaults(handler=guarded(_cmd_signals))


def _tenant_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant id (UUID)")


def _reason_codes_help() -> str:
    width = max(len(code) for code in REASON_CODES)
    lines = ["reason codes:"]
    for code, meaning in REASON_CODES.items():
        wrapped = textwrap.wrap(meaning, width=72 - width)
        lines.append(f"  {code:<{width}}  {wrapped[0]}")
        lines.extend(f"  {'':<{width}}  {rest}" for rest in wrapped[1:])
    return "\n".join(lines)


# ----------------------------------------------------------------------- handlers


def _cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        host = normalize_hostname(args.host, base_domain=settings.base_domain)
    except HostnameError as exc:
        if not args.json:
            raise CliError(f"{exc.code}: {exc.message}", ExitCode.INVALID_INPUT) from exc
        output.emit_json(
            {"input": args.host, "valid": False, "code": exc.code, "message": exc.message}
        )
        return ExitCode.INVALID_INPUT
    if args.json:
        output.emit_json({"input": args.host, "valid": True, "hostname": host})
    else:
        output.line(host)
    return 0


def _cmd_request(args: argparse.Namespace, settings: Settings) -> int:
    tenant_id = _tenant(args)
    with operator_service(settings) as service:
        view = service.request(tenant_id, args.domain, actor_of(args))
    _show(args, view)
    return 0


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    tenant_id = _tenant(args)
    with operator_service(settings) as service:
        view = service.get(tenant_id)
    _show(args, view)
    return 0


def _cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1", ExitCode.INVALID_INPUT)
    tenant_id = _tenant(args)
    with operator_service(settings) as service:
        entries = service.audit_log(tenant_id)[::-1][: args.limit]
    if args.json:
        output.emit_json(
            [
                {
                    "occurred_at": e.occurred_at.isoformat(),
                    "actor": e.actor,
                    "action": e.action,
                    "domain": e.domain,
                    "status_before": e.status_before,
                    "status_after": e.status_after,
                    "outcome": e.outcome,
                    "detail": e.detail,
                }
                for e in entries
            ]
        )
    else:
        output.table(
            ["WHEN", "ACTOR", "ACTION", "OUTCOME", "DOMAIN", "STATUS"],
            [
                [
                    e.occurred_at.isoformat(timespec="seconds"),
                    e.actor,
                    e.action,
                    e.outcome,
                    e.domain or "",
                    f"{e.status_before or '-'} -> {e.status_after or '-'}",
                ]
                for e in entries
            ],
        )
    return 0


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    status = DomainStatus(args.status) if args.status else None
    with operator_service(settings) as service:
        views = service.list(status)
    if args.json:
        output.emit_json([v.to_json() for v in views])
    else:
        output.table(
            ["TENANT", "DOMAIN", "STATUS", "CANONICAL HOST", "UPDATED"],
            [
                [v.tenant_id, v.domain, v.status, v.canonical_host, v.updated_at.isoformat()]
                for v in views
            ],
        )
    return 0


def _cmd_refresh(args: argparse.Namespace, settings: Settings) -> int:
    tenant_id = _tenant(args)
    with operator_service(settings) as service:
        view = service.refresh(tenant_id, actor_of(args))
    _show(args, view)
    return 0


def _cmd_disable(args: argparse.Namespace, settings: Settings) -> int:
    tenant_id = _tenant(args)
    with operator_service(settings) as service:
        view = service.disable(tenant_id, actor_of(args))
    _show(args, view)
    return 0


def _cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    tenant_id = _tenant(args)
    with operator_service(settings) as service:
        view = service.purge(tenant_id, actor_of(args))
    if args.json:
        output.emit_json({"purged": view.to_json()})
    else:
        output.line(f"purged {view.domain} of tenant {view.tenant_id} (the audit trail stays)")
    return 0


def _cmd_expire(args: argparse.Namespace, settings: Settings) -> int:
    if args.older_than_hours <= 0:
        raise CliError("--older-than-hours must be positive", ExitCode.INVALID_INPUT)
    with operator_service(settings) as service:
        expired = service.expire_unverified_claims(
            timedelta(hours=args.older_than_hours), actor=actor_of(args)
        )
    if args.json:
        output.emit_json({"expired": [str(t) for t in expired]})
    else:
        output.line(f"{len(expired)} unverified claim(s) expired")
        for tenant in expired:
            output.line(f"  {tenant}")
    return 0


def _cmd_signals(args: argparse.Namespace, settings: Settings) -> int:
    with operator_service(settings, deliver=False) as service:
        queued = service.queued_signals()
    if args.json:
        output.emit_json(
            {
                "queued": [
                    {
                        "tenant_id": str(q.tenant_id),
                        "signal": q.signal,
                        "queued_at": q.queued_at.isoformat(),
                        "attempts": q.attempts,
                        "next_attempt_at": q.next_attempt_at.isoformat(),
                        "last_error": q.last_error,
                    }
                    for q in queued
                ]
            }
        )
        return 0
    output.line(f"{len(queued)} workflow signal(s) queued")
    for q in queued:
        reason = f"; last error: {q.last_error}" if q.last_error else ""
        output.line(
            f"  {q.tenant_id} {q.signal} queued {q.queued_at.isoformat()}, "
            f"{q.attempts} attempt(s), next {q.next_attempt_at.isoformat()}{reason}"
        )
    return 0


# ------------------------------------------------------------------------ helpers


def _tenant(args: argparse.Namespace) -> UUID:
    return parse_tenant_id(str(args.tenant))


def _show(args: argparse.Namespace, view: DomainView) -> None:
    if args.json:
        output.emit_json(view.to_json())
        return
    last_checked = view.last_checked_at.isoformat() if view.last_checked_at else "never"
    rows = [
        ("tenant", str(view.tenant_id)),
        ("domain", view.domain),
        ("status", view.status.value),
        ("message", view.status_message),
        ("canonical host", view.canonical_host),
        ("certificate", view.certificate_secret_name),
        ("last checked", last_checked),
        ("updated", view.updated_at.isoformat()),
        ("version", str(view.version)),
    ]
    for label, value in rows:
        output.line(f"{label + ':':<16}{value}")
