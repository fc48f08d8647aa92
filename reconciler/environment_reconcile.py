"""One environment reconcile: rows -> preview/up (policies enforced) -> export -> Git.

Shared by the Temporal activity (reconcile_environment) and the one-shot
`portal-domains reconcile --env E` command, so both do exactly the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry.trace import Tracer

from adapters.gitops import GitOpsRepo, PublishResult
from adapters.telemetry import span
from core.records import DomainRecord
from core.status import DomainStatus
from db.service import DomainService
from stack.automation import EnvironmentStack, Progress, RunSummary
from stack.export import render_files


def all_records(service: DomainService) -> list[DomainRecord]:
    """Every row, any status: deployable ones are deployed, the rest explain deletions."""
    return service.load_records(tuple(DomainStatus))


@dataclass(frozen=True, kw_only=True)
class ReconcileReport:
    summary: RunSummary
    files: dict[str, str]
    published: PublishResult | None
    duration_seconds: float
    recovered: tuple[str, ...] = ()


def reconcile_once(
    *,
    stack: EnvironmentStack,
    load_records: Callable[[], Sequence[DomainRecord]],
    git: GitOpsRepo | None,
    tracer: Tracer,
    recover_first: bool = False,
    allow_empty: bool = False,
    confirm_deletions: bool = False,
    progress: Progress | None = None,
) -> ReconcileReport:
    started = time.monotonic()
    env = stack.stack_name
    recovered: tuple[str, ...] = ()
    with span(tracer, "reconcile_environment", env=env, stage="reconcile"):
        if recover_first:
            with span(tracer, "pulumi.recover", env=env):
                recovered = tuple(stack.recover())
        records = load_records()
        with span(tracer, "pulumi.up", env=env):
            summary = stack.up(
                records,
                allow_empty=allow_empty,
                confirm_deletions=confirm_deletions,
                progress=progress,
            )
        with span(tracer, "export", env=env):
            files = render_files(stack.state_objects(), environment=env)
        published = None
        if git is not None:
            with span(tracer, "git.push", env=env):
                published = git.publish(stack.config.manifest_root, files)
    return ReconcileReport(
        summary=summary,
        files=files,
        published=published,
        duration_seconds=time.monotonic() - started,
        recovered=recovered,
    )
