"""One environment reconcile: rows -> an `up` per changed shard -> export -> Git.

Shared by the Temporal activity (reconcile_environment) and the one-shot
`portal-domains reconcile --env E` command, so both do exactly the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry.trace import Tracer

from adapters.gitops import GitOpsRepo, PublishResult
from adapters.kube import KubeClient
from adapters.telemetry import span
from core.config import StackConfig
from core.digest import skip_reason
from core.drift import drifted_fields
from core.manifests import desired_documents
from core.records import DomainRecord
from core.status import DomainStatus
from core.sync import Synced, format_synced
from db.service import DomainService
from stack.automation import ISSUER_FILE, EnvironmentStack, Progress, RunSummary
from stack.export import render_files
from stack.shards import EnvironmentStacks, combine


def all_records(service: DomainService) -> list[DomainRecord]:
    """Every row, any status: deployable ones are deployed, the rest explain deletions."""
    return service.load_records(tuple(DomainStatus))


@dataclass(frozen=True, kw_only=True)
class Drift:
    urn: str
    kind: str
    name: str
    namespace: str | None
    fields: tuple[str, ...]  # empty: the object is gone from the cluster

    def line(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        what = ", ".join(self.fields) if self.fields else "deleted"
        return f"{self.kind} {where}: {what}"


def detect_drift(
    stack: EnvironmentStack | EnvironmentStacks, kube: KubeClient, records: Sequence[DomainRecord]
) -> list[Drift]:
    """Objects the stack holds whose live copy no longer says what the rows declare."""
    if isinstance(stack, EnvironmentStacks):
        return [d for shard in stack.shards for d in detect_drift(shard, kube, records)]
    records = stack.mine(records)
    wanted = {_key(doc): doc for doc in desired_documents(records, stack.config)}
    found = []
    for item in stack.state_objects():
        applied = item["outputs"]
        desired = wanted.get(_key(applied)) if applied.get("kind") else None
        if desired is None:
            continue  # leaving the stack anyway
        live = kube.live_object(desired)
        fields = () if live is None else tuple(drifted_fields(desired, live))
        if live is None or fields:
            meta = desired["metadata"]
            found.append(
                Drift(
                    urn=item["urn"],
                    kind=str(desired["kind"]),
                    name=str(meta["name"]),
                    namespace=meta.get("namespace"),
                    fields=fields,
                )
            )
    return found


def _key(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return (str(doc.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))


def synced_versions(objects: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Per tenant prefix, what the API server stored at the apply (from the stack's outputs)."""
    per_prefix: dict[str, dict[str, Synced]] = {}
    for item in objects:
        outputs = item["outputs"]
        meta = outputs.get("metadata") or {}
        if item["slug"] == ISSUER_FILE or not meta.get("resourceVersion"):
            continue
        per_prefix.setdefault(item["slug"], {})[str(outputs.get("kind"))] = Synced(
            resource_version=str(meta["resourceVersion"]),
            generation=int(meta.get("generation") or 0),
        )
    return {prefix: format_synced(found) for prefix, found in per_prefix.items()}


def kube_client_for(stack: EnvironmentStack | EnvironmentStacks) -> KubeClient | None:
    """The API server of a cluster-mode stack; None in gitops mode."""
    if stack.config.mode != "cluster" or not stack.config.kubeconfig:
        return None
    return KubeClient.from_kubeconfig(Path(stack.config.kubeconfig))


@dataclass(frozen=True, kw_only=True)
class ReconcileReport:
    summary: RunSummary
    files: dict[str, str]
    published: PublishResult | None
    duration_seconds: float
    recovered: tuple[str, ...] = ()
    drift: tuple[Drift, ...] = ()
    # nm-kube-config files portal-domains did not write, and what the publish did
    # with each ("adopted <path> (was not written by portal-domains)", ...).
    adoption: tuple[str, ...] = ()
    # Why the engine did not run (nothing changed since the last successful run).
    skipped: str | None = None
    # The stacks whose engine ran (the others' digests were unchanged).
    shards_run: tuple[str, ...] = ()


def reconcile_once(
    *,
    stack: EnvironmentStack | EnvironmentStacks,
    load_records: Callable[[], Sequence[DomainRecord]],
    git: GitOpsRepo | None,
    tracer: Tracer,
    recover_first: bool = False,
    allow_empty: bool = False,
    confirm_deletions: bool = False,
    progress: Progress | None = None,
    record_synced: Callable[[Mapping[str, str]], object] | None = None,
    hold_refused: bool = False,
    record_removed: Callable[[set[str], str | None], object] | None = None,
    skip_unchanged: bool = False,
    full_pass_every: timedelta = timedelta(hours=1),
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ReconcileReport:
    """One environment reconcile: rows -> up -> export -> Git (see the module doc).

    `hold_refused` (the worker): deletions a guard refuses stay in the stack and the
    rest is applied; RunSummary.held_tenants lists them until an operator confirms.
    `record_removed(slugs still in the stack, commit)` runs once the files are
    published: disabled domains outside the stack are then really removed.
    `skip_unchanged` (the worker): when the desired state's digest (core.digest)
    equals the last successful run's, no drift was found and no full pass is due
    (`full_pass_every` since the last engine run), the engine does not run at all.
    """
    started = time.monotonic()
    shards = stack.shards if isinstance(stack, EnvironmentStacks) else [stack]
    env = stack.config.environment
    with span(tracer, "reconcile_environment", env=env, stage="reconcile"):
        if isinstance(stack, EnvironmentStacks):
            stack.check_layout()  # a changed shard count needs `stack reshard` first
        records = load_records()
        kube = kube_client_for(stack)
        runs = [
            run_shard(
                shard,
                records,
                kube=kube,
                tracer=tracer,
                recover_first=recover_first,
                skip_unchanged=skip_unchanged,
                allow_empty=allow_empty,
                confirm_deletions=confirm_deletions,
                progress=progress,
                hold_refused=hold_refused,
                full_pass_every=full_pass_every,
                now=now,
                announce=len(shards) > 1,
            )
            for shard in shards
        ]
        files, published = publish_shards(
            stack.config,
            [run.objects for run in runs],
            git=git,
            tracer=tracer,
            record_synced=record_synced if kube is not None else None,
            record_removed=record_removed,
        )
    return ReconcileReport(
        summary=combine(env, [run.summary for run in runs]),
        files=files,
        published=published,
        duration_seconds=time.monotonic() - started,
        recovered=tuple(step for run in runs for step in run.recovered),
        drift=tuple(d for run in runs for d in run.drift),
        adoption=tuple(step.line() for step in published.adoption) if published else (),
        skipped=skipped_text([run.skipped for run in runs]),
        shards_run=tuple(run.shard.stack_name for run in runs if run.skipped is None),
    )


@dataclass(frozen=True, kw_only=True)
class ShardRun:
    """What one shard's part of a reconcile did, and the objects its stack now holds."""

    shard: EnvironmentStack
    summary: RunSummary
    objects: list[dict[str, Any]]
    drift: list[Drift]
    skipped: str | None
    recovered: tuple[str, ...] = ()


def run_shard(
    shard: EnvironmentStack,
    records: Sequence[DomainRecord],
    *,
    kube: KubeClient | None,
    tracer: Tracer,
    recover_first: bool = False,
    skip_unchanged: bool = False,
    allow_empty: bool = False,
    confirm_deletions: bool = False,
    progress: Progress | None = None,
    hold_refused: bool = False,
    full_pass_every: timedelta = timedelta(hours=1),
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    announce: bool = False,
) -> ShardRun:
    """One shard: skipped when its digest is unchanged, else one `up`.

    After an `up` that holds nothing, the digest and the objects are recorded at
    once: the files are published by every reconcile whether its engine ran or
    not, so a publish that fails after this is repaired by the next one.
    """
    name = shard.stack_name
    recovered: tuple[str, ...] = ()
    if recover_first:
        with span(tracer, "pulumi.recover", env=name):
            recovered = tuple(shard.recover())
    drift: list[Drift] = []
    if kube is not None:
        with span(tracer, "kubernetes.drift", env=name):
            drift = detect_drift(shard, kube, records)
    digest = shard.desired_digest(records)
    skipped = None
    cached = None
    if skip_unchanged and not recover_first and not confirm_deletions and not drift:
        recorded = shard.recorded()
        last = recorded[0] if recorded else None
        skipped = skip_reason(last, digest, now=now(), full_pass_every=full_pass_every)
        cached = recorded[1] if recorded and skipped is not None else None
    if skipped is not None and cached is not None:
        # No engine run; the recorded files are still exported and published, so
        # a hand edit in nm-kube-config is repaired all the same.
        if announce and progress:
            progress(f"{name}: unchanged, engine skipped")
        return ShardRun(
            shard=shard,
            summary=_skipped_summary(shard, records),
            objects=cached,
            drift=drift,
            skipped=skipped,
            recovered=recovered,
        )
    if announce and progress:
        progress(f"{name}: running the engine")
    ran_at = now()
    with span(tracer, "pulumi.up", env=name):
        summary = shard.up(
            records,
            allow_empty=allow_empty,
            confirm_deletions=confirm_deletions,
            progress=progress,
            # Hand-deleted objects come back through the refresh; hand-edited
            # ones are re-created, since the provider's diff may not see the edit.
            replace=[d.urn for d in drift if d.fields],
            hold_refused=hold_refused,
        )
    objects = shard.state_objects()
    if not summary.held_tenants:
        shard.record_run(digest, at=ran_at, objects=objects)
    # (a run that holds deletions records nothing: the stack still differs from the rows)
    return ShardRun(
        shard=shard,
        summary=summary,
        objects=objects,
        drift=drift,
        skipped=None,
        recovered=recovered,
    )


def publish_shards(
    config: StackConfig,
    shard_objects: Sequence[Sequence[dict[str, Any]]],
    *,
    git: GitOpsRepo | None,
    tracer: Tracer,
    record_synced: Callable[[Mapping[str, str]], object] | None = None,
    record_removed: Callable[[set[str], str | None], object] | None = None,
) -> tuple[dict[str, str], PublishResult | None]:
    """Every shard's objects -> one file per tenant -> one commit (only changed files).

    `record_synced` (cluster mode) gets what the API server stored per tenant;
    `record_removed(slugs still in a stack, commit)` runs once the files are
    published: disabled domains outside every stack are then really removed.
    """
    env = config.environment
    objects = [item for found in shard_objects for item in found]
    with span(tracer, "export", env=env):
        files = render_files(objects, environment=env)
    if record_synced is not None:
        record_synced(synced_versions(objects))
    published = None
    if git is not None:
        with span(tracer, "git.push", env=env):
            published = git.publish(config.manifest_root, files)
    if record_removed is not None:
        present = {o["slug"] for o in objects}
        record_removed(present, published.commit if published else None)
    return files, published


def skipped_text(reasons: Sequence[str | None]) -> str | None:
    """The report's `skipped`: set only when no shard ran the engine."""
    if not reasons or any(reason is None for reason in reasons):
        return None
    if len(reasons) == 1:
        return reasons[0]
    return f"nothing changed in any of the {len(reasons)} shards since their last successful run"


def _skipped_summary(stack: EnvironmentStack, records: Sequence[DomainRecord]) -> RunSummary:
    """The summary of a run whose engine pass was skipped: the stack holds the rows."""
    desired = sorted(r.prefix for r in stack.mine(records) if r.deployable)
    return RunSummary(
        environment=stack.stack_name,
        operation="skipped",
        counts=dict.fromkeys(("create", "update", "replace", "delete", "same"), 0),
        tenants=[],
        desired_tenants=desired,
        stack_tenants_before=desired,
    )
