"""`preview`, `up`, `export`, `refresh`, `recover` and `reconcile` for one environment."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from opentelemetry.sdk.trace import TracerProvider

from adapters.gitops import GitOpsRepo, GitSettings, ensure_bare_remote
from adapters.manifest_files import sync_directory
from cli import output
from cli.exit_codes import CliError, ExitCode
from core.config import ConfigError
from core.records import DomainRecord
from core.settings import Settings
from db.migrate import SchemaNotReady, require_current_schema
from reconciler.environment_reconcile import all_records, reconcile_once
from reconciler.wiring import domain_service
from stack.automation import EnvironmentStack, RefusedRun, RunSummary, StackOperationError
from stack.config import ENVIRONMENTS, load_stack_config
from stack.export import render_files
from stack.toolchain import pulumi_environment

P = ParamSpec("P")
R = TypeVar("R")


def _stack(args: argparse.Namespace, settings: Settings) -> EnvironmentStack:
    try:
        config = load_stack_config(args.env)
    except ConfigError as err:
        raise CliError(str(err), exit_code=ExitCode.INVALID_INPUT) from err
    penv = pulumi_environment(work_dir=settings.work_dir)
    if penv.toolchain.executable("pulumi") is None:
        raise CliError("no Pulumi CLI found: run scripts/setup.sh", exit_code=ExitCode.UNAVAILABLE)
    return EnvironmentStack(penv, config, work_dir=settings.work_dir)


def _records(settings: Settings) -> list[DomainRecord]:
    try:
        require_current_schema(settings.database_url)
    except SchemaNotReady as err:
        raise CliError(str(err), exit_code=ExitCode.UNAVAILABLE) from err

    return all_records(domain_service(settings))


def _progress(args: argparse.Namespace) -> output.ProgressFn | None:
    return None if getattr(args, "quiet", False) else output.progress


def _print_summary(summary: RunSummary) -> None:
    counts = summary.counts
    output.line(
        f"{summary.environment} {summary.operation}: {counts['create']} to create, "
        f"{counts['update']} to update, {counts['replace']} to replace, "
        f"{counts['delete']} to delete ({len(summary.desired_tenants)} tenants desired)"
    )
    if summary.tenants:
        output.table(
            ["TENANT", "CHANGE", "RESOURCES"],
            [
                [t.slug, t.kind, ", ".join(f"{op} {n}" for op, n in sorted(t.operations.items()))]
                for t in summary.tenants
            ],
        )
    for violation in summary.policy_violations:
        output.line(f"policy: {violation.line()}")


def _run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    try:
        return fn(*args, **kwargs)
    except RefusedRun as err:
        raise CliError(f"refused ({err.code}): {err}", exit_code=ExitCode.REFUSED) from err
    except StackOperationError as err:
        raise CliError(
            str(err), exit_code=ExitCode.PERMANENT if err.permanent else ExitCode.FAILED
        ) from err


def cmd_preview(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(args, settings)
    summary: RunSummary = _run(stack.preview, _records(settings), progress=_progress(args))
    if args.json:
        output.emit_json(summary.as_dict())
    else:
        _print_summary(summary)
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(args, settings)
    records = _records(settings)
    confirm = args.yes
    if not confirm:
        planned: RunSummary = _run(stack.preview, records, progress=_progress(args))
        deletions = planned.counts["delete"] + planned.counts["replace"]
        if deletions:
            if not sys.stdin.isatty():
                raise CliError(
                    f"this update deletes or replaces {deletions} resource(s) "
                    f"(tenants removed: {', '.join(planned.deleted_tenants) or 'none'}); "
                    "re-run with --yes to confirm",
                    exit_code=ExitCode.REFUSED,
                )
            _print_summary(planned)
            answer = input(f"Delete/replace {deletions} resource(s)? [y/N] ").strip().lower()
            if answer not in {"y", "yes"}:
                raise CliError("aborted, nothing changed", exit_code=ExitCode.REFUSED)
        confirm = True
    summary: RunSummary = _run(
        stack.up,
        records,
        allow_empty=args.allow_empty,
        confirm_deletions=confirm,
        progress=_progress(args),
    )
    if args.json:
        output.emit_json(summary.as_dict())
    else:
        _print_summary(summary)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(args, settings)
    files = render_files(stack.state_objects(), environment=stack.stack_name)
    target = Path(args.out) / stack.config.manifest_root
    result = sync_directory(files, target)
    if args.json:
        output.emit_json(
            {
                "directory": str(target),
                "written": result.written,
                "deleted": result.deleted,
                "unchanged": result.unchanged,
            }
        )
    else:
        output.line(
            f"{target}: {len(result.written)} written, {len(result.deleted)} deleted, "
            f"{len(result.unchanged)} unchanged"
        )
    return 0


def cmd_refresh(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(args, settings)
    changes = _run(stack.refresh, progress=_progress(args))
    if args.json:
        output.emit_json({"environment": args.env, "changes": changes})
    else:
        output.line(f"{args.env} refreshed: {changes}")
    return 0


def cmd_recover(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(args, settings)
    steps = _run(stack.recover, progress=_progress(args))
    if args.json:
        output.emit_json({"environment": args.env, "steps": steps})
    else:
        for step in steps:
            output.line(f"{args.env}: {step}")
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    """The environment reconcile without Temporal: up, export, commit and push."""

    stack = _stack(args, settings)
    _records(settings)  # schema check with a clear message
    remote = settings.gitops_remote or ensure_bare_remote(settings.embedded_remote)
    git = GitOpsRepo(GitSettings(remote_url=remote, worktree=settings.gitops_worktree(args.env)))
    report = _run(
        reconcile_once,
        stack=stack,
        load_records=lambda: all_records(domain_service(settings)),
        git=git,
        tracer=TracerProvider().get_tracer("portal-domains"),
        recover_first=args.recover,
        allow_empty=args.allow_empty,
        confirm_deletions=args.yes,
        progress=_progress(args),
    )
    published = report.published
    if args.json:
        output.emit_json(
            {
                **report.summary.as_dict(),
                "commit": published.commit if published else None,
                "changed_files": list(published.changed_slugs) if published else [],
                "remote": remote,
            }
        )
    else:
        _print_summary(report.summary)
        if published and published.commit:
            output.line(
                f"committed {published.commit[:12]} to {remote} "
                f"({', '.join(published.changed_slugs)})"
            )
        else:
            output.line(f"nm-kube-config already up to date ({remote})")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def env_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--env", required=True, choices=ENVIRONMENTS, help="environment")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--quiet", action="store_true", help="no per-resource progress")
        return parser

    preview = env_parser("preview", "show what `up` would change, per tenant (policies run)")
    preview.set_defaults(handler=cmd_preview)

    up = env_parser("up", "apply the database's verified domains to the stack")
    up.add_argument("--yes", action="store_true", help="confirm deletions without asking")
    up.add_argument(
        "--allow-empty",
        action="store_true",
        help="allow an empty desired state to delete every tenant",
    )
    up.set_defaults(handler=cmd_up)

    export = env_parser("export", "write per-tenant YAML from the stack state into DIR")
    export.add_argument("--out", required=True, help="an nm-kube-config checkout (or any dir)")
    export.set_defaults(handler=cmd_export)

    refresh = env_parser("refresh", "refresh the stack state (clears pending creates)")
    refresh.set_defaults(handler=cmd_refresh)

    recover = env_parser("recover", "clear a stale lock / pending operations of a crashed run")
    recover.set_defaults(handler=cmd_recover)

    reconcile = env_parser("reconcile", "one-shot reconcile without Temporal: up, export, push")
    reconcile.add_argument("--yes", action="store_true", help="confirm deletions over the cap")
    reconcile.add_argument(
        "--allow-empty",
        action="store_true",
        help="allow an empty desired state to delete every tenant",
    )
    reconcile.add_argument(
        "--recover", action="store_true", help="recover a crashed previous run first"
    )
    reconcile.set_defaults(handler=cmd_reconcile)
