"""`preview`, `up`, `export`, `refresh`, `recover` and `reconcile` for one environment."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import yaml
from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client

from adapters.gitops import redact
from adapters.kube_validate import ValidationProblem, validate_manifests
from adapters.manifest_files import sync_directory
from cli import output
from cli.exit_codes import CliError, ExitCode
from core.config import ConfigError
from core.records import DomainRecord
from core.settings import Settings
from db.migrate import SchemaNotReady, require_current_schema
from loopback import cluster
from reconciler.environment_reconcile import (
    all_records,
    detect_drift,
    kube_client_for,
    reconcile_once,
)
from reconciler.payloads import ReconcileOutcome, ReconcileRequest
from reconciler.starter import reconcile_busy, reconcile_now
from reconciler.wiring import connect, domain_service, gitops_remote, gitops_repo
from stack.automation import RefusedRun, RunSummary, StackOperationError
from stack.config import ENVIRONMENTS, load_stack_config
from stack.export import render_files
from stack.shards import EnvironmentStacks
from stack.toolchain import pulumi_environment

P = ParamSpec("P")
R = TypeVar("R")


def _stack(args: argparse.Namespace, settings: Settings) -> EnvironmentStacks:
    try:
        config = load_stack_config(args.env)
    except ConfigError as err:
        raise CliError(str(err), exit_code=ExitCode.INVALID_INPUT) from err
    penv = pulumi_environment(work_dir=settings.work_dir, environment=args.env)
    if penv.toolchain.executable("pulumi") is None:
        raise CliError("no Pulumi CLI found: run scripts/setup.sh", exit_code=ExitCode.UNAVAILABLE)
    return EnvironmentStacks(penv, config, work_dir=settings.work_dir)


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
    if summary.held_tenants:
        output.line(
            f"held, not deleted until an operator confirms ({', '.join(summary.held_tenants)}): "
            f"{summary.held_reason}"
        )
        output.line(f"  confirm: portal-domains reconcile --env {summary.environment} --yes")


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
    # What the worker would do, including the deletions it would hold for confirmation.
    summary: RunSummary = _run(stack.plan, _records(settings), progress=_progress(args))
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
    # Resolved before the export so a missing kubeconfig fails fast.
    kubeconfig = _validation_kubeconfig(args)
    stack = _stack(args, settings)
    files = render_files(stack.state_objects(), environment=stack.stack_name)
    target = Path(args.out) / stack.config.manifest_root
    try:
        result = sync_directory(files, target)
    except FileExistsError as err:
        # A same-named file portal-domains did not write: never overwritten here.
        raise CliError(
            f"{err}; move it away or export into another --out directory "
            "(nm-kube-config itself adopts such files: `portal-domains gitops adopt "
            f"--env {args.env} --dry-run`)",
            ExitCode.REFUSED,
        ) from err
    validation = None
    if kubeconfig is not None:
        exported = sorted(target / name for name in [*result.written, *result.unchanged])
        validation = validate_yaml_files(exported, kubeconfig=kubeconfig, kubectl=_kubectl())
    if args.json:
        payload: dict[str, Any] = {
            "directory": str(target),
            "written": result.written,
            "deleted": result.deleted,
            "unchanged": result.unchanged,
        }
        if validation is not None:
            payload["validation"] = validation.as_dict()
        output.emit_json(payload)
    else:
        output.line(
            f"{target}: {len(result.written)} written, {len(result.deleted)} deleted, "
            f"{len(result.unchanged)} unchanged"
        )
        if validation is not None:
            for path, problem in validation.problems:
                output.line(f"rejected: {path.name if path else '(all files)'}: {problem.line()}")
            output.line(validation.summary())
    if validation is not None and validation.problems:
        return ExitCode.FAILED
    return 0


@dataclass(frozen=True, kw_only=True)
class FilesValidation:
    """What the API server said about a set of YAML files (export --validate)."""

    kubeconfig: Path
    files: int
    objects: int
    problems: list[tuple[Path | None, ValidationProblem]]  # None: no single file

    def summary(self) -> str:
        rejected = len(self.problems)
        verdict = "all accepted" if not rejected else f"{rejected} rejected"
        return (
            f"server-side dry-run ({self.kubeconfig}): {self.objects} objects "
            f"in {self.files} files, {verdict}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kubeconfig": str(self.kubeconfig),
            "files": self.files,
            "objects": self.objects,
            "accepted": not self.problems,
            "problems": [
                {"file": str(path) if path else None, **p.as_dict()} for path, p in self.problems
            ],
        }


def validate_yaml_files(
    paths: Sequence[Path], *, kubeconfig: Path, kubectl: str
) -> FilesValidation:
    """Server-side dry-run of every object in `paths`; each problem names its file."""
    documents: list[dict[str, Any]] = []
    origins: list[Path] = []
    for path in paths:
        try:
            loaded = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        except (OSError, yaml.YAMLError) as err:
            raise CliError(f"cannot read {path}: {err}") from err
        for doc in loaded:
            if not isinstance(doc, dict):
                raise CliError(f"{path}: a document is not a Kubernetes object")
            documents.append(doc)
            origins.append(path)
    problems = validate_manifests(documents, kubeconfig=kubeconfig, kubectl=kubectl)
    return FilesValidation(
        kubeconfig=kubeconfig,
        files=len(paths),
        objects=len(documents),
        # index -1: the batch as a whole, which belongs to no one file.
        problems=[(origins[p.index] if p.index >= 0 else None, p) for p in problems],
    )


def _validation_kubeconfig(args: argparse.Namespace) -> Path | None:
    """The kubeconfig `export --validate` dry-runs against: --kubeconfig, else $KUBECONFIG."""
    if not args.validate:
        if args.kubeconfig:
            raise CliError("--kubeconfig is only used with --validate", ExitCode.INVALID_INPUT)
        return None
    raw = args.kubeconfig or os.environ.get("KUBECONFIG", "")
    if not raw:
        raise CliError(
            "--validate needs --kubeconfig PATH (or $KUBECONFIG)", ExitCode.INVALID_INPUT
        )
    if os.pathsep in raw:
        # kubectl merges a list, but --kubeconfig takes one file: make the choice explicit.
        raise CliError(
            "$KUBECONFIG lists several files; pass one with --kubeconfig", ExitCode.INVALID_INPUT
        )
    path = Path(raw).expanduser()
    if not path.is_file():
        raise CliError(f"kubeconfig {path} does not exist", ExitCode.INVALID_INPUT)
    return path


def _kubectl() -> str:
    """The kubectl setup-kubernetes.sh builds (it matches the loopback API server), else PATH's."""
    try:
        return str(cluster.locate_binaries().kubectl)
    except (cluster.ClusterError, OSError):
        found = shutil.which("kubectl")
    if found is None:
        raise CliError(
            f"--validate needs kubectl: install it or {cluster.SETUP_HINT}", ExitCode.UNAVAILABLE
        )
    return found


def cmd_refresh(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(args, settings)
    changes = _run(stack.refresh, progress=_progress(args))
    kube = kube_client_for(stack)
    # What the live objects say against what the rows declare: the provider's
    # refresh alone misses edits whose fields another field manager took over.
    drift = detect_drift(stack, kube, _records(settings)) if kube is not None else []
    if args.json:
        output.emit_json(
            {
                "environment": args.env,
                "changes": changes,
                "drift": [dataclasses.asdict(d) for d in drift],
            }
        )
    else:
        output.line(f"{args.env} refreshed: {changes}")
        for item in drift:
            output.line(f"drift: {item.line()} (the next reconcile restores it)")
        if kube is not None and not drift:
            output.line("no drift: the cluster matches the database")
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
    """One environment reconcile: up, export, commit and push.

    Through the environment workflow (it joins the worker's queue, so it can never
    race or cancel the worker's run), or with `--local` in this process, for when
    Temporal is down; `--local` refuses while the workflow is reconciling.
    """
    if args.local:
        return _reconcile_local(args, settings)
    if args.recover:
        raise CliError(
            "--recover applies to --local (the worker's activity recovers by itself)",
            ExitCode.INVALID_INPUT,
        )
    _records(settings)  # schema check with a clear message
    outcome = asyncio.run(_reconcile_through_workflow(args, settings))
    if args.json:
        output.emit_json(dataclasses.asdict(outcome))
    else:
        output.line(outcome.message)
        if outcome.commit:
            output.line(f"committed {outcome.commit[:12]} ({', '.join(outcome.changed_slugs)})")
        for line in outcome.adoption:
            output.line(line)
    if not outcome.ok:
        raise CliError(f"the reconcile failed: {outcome.message}", ExitCode.FAILED)
    return 0


async def _temporal(settings: Settings, timeout: float) -> Client:
    try:
        return await asyncio.wait_for(connect(settings), timeout)
    except (RuntimeError, OSError, TimeoutError) as err:
        raise CliError(
            f"cannot reach Temporal at {settings.temporal_address} ({err or 'timed out'}); "
            "`portal-domains reconcile --local` runs the reconcile in this process",
            ExitCode.UNAVAILABLE,
        ) from err


async def _reconcile_through_workflow(
    args: argparse.Namespace, settings: Settings
) -> ReconcileOutcome:
    client = await _temporal(settings, 10)
    request = ReconcileRequest(
        request_id=f"cli-{uuid.uuid4()}",
        reason="operator reconcile (portal-domains reconcile)",
        confirm_deletions=args.yes,
        allow_empty=args.allow_empty,
    )
    try:
        return await asyncio.wait_for(
            reconcile_now(
                client,
                environment=args.env,
                task_queue=settings.task_queue,
                request=request,
                debounce_seconds=settings.debounce_seconds,
            ),
            args.timeout,
        )
    except TimeoutError:
        raise CliError(
            f"no reconcile of {args.env} finished within {args.timeout:g}s: is "
            f"`portal-domains worker` running on task queue {settings.task_queue}? The request "
            "stays queued and runs when a worker polls.",
            ExitCode.UNAVAILABLE,
        ) from None


def _reconcile_local(args: argparse.Namespace, settings: Settings) -> int:
    """The reconcile in this process (Temporal down): refused while the workflow reconciles."""

    async def busy() -> bool:
        return await reconcile_busy(await _temporal(settings, 3), args.env)

    try:
        in_flight = asyncio.run(busy())
    except CliError:
        in_flight = False
        output.progress(f"Temporal unreachable: reconciling {args.env} in this process")
    if in_flight:
        raise CliError(
            f"the {args.env} environment workflow is reconciling right now; run without "
            "--local (it joins the queue) or wait for it to finish",
            ExitCode.REFUSED,
        )

    stack = _stack(args, settings)
    _records(settings)  # schema check with a clear message
    remote = redact(gitops_remote(settings))  # printed: never its credentials
    git = gitops_repo(settings, args.env)
    service = domain_service(settings)
    report = _run(
        reconcile_once,
        stack=stack,
        load_records=lambda: all_records(service),
        git=git,
        record_removed=lambda present, commit: service.record_removals(
            present, environment=args.env, commit=commit
        ),
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
                "adoption": list(report.adoption),
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
        for line in report.adoption:
            output.line(line)
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
    export.add_argument(
        "--validate",
        action="store_true",
        help="server-side dry-run of the exported files (strict field validation); "
        "exit 1 if the API server rejects any object",
    )
    export.add_argument(
        "--kubeconfig", metavar="PATH", help="the cluster --validate asks (default: $KUBECONFIG)"
    )
    export.set_defaults(handler=cmd_export)

    refresh = env_parser("refresh", "refresh the stack state (clears pending creates)")
    refresh.set_defaults(handler=cmd_refresh)

    recover = env_parser("recover", "clear a stale lock / pending operations of a crashed run")
    recover.set_defaults(handler=cmd_recover)

    reconcile = env_parser(
        "reconcile",
        "one reconcile through the environment workflow (never racing the worker): up, "
        "export, push; --local runs it here when Temporal is down",
    )
    reconcile.add_argument(
        "--yes", action="store_true", help="confirm deletions over the cap (and held ones)"
    )
    reconcile.add_argument(
        "--local",
        action="store_true",
        help="run in this process without Temporal (refused while the workflow reconciles)",
    )
    reconcile.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds to wait for the workflow's run (default 1800)",
    )
    reconcile.add_argument(
        "--allow-empty",
        action="store_true",
        help="allow an empty desired state to delete every tenant",
    )
    reconcile.add_argument(
        "--recover", action="store_true", help="with --local: recover a crashed previous run first"
    )
    reconcile.set_defaults(handler=cmd_reconcile)
