"""One environment reconcile: rows -> preview/up (policies enforced) -> export -> Git.

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
from core.digest import skip_reason
from core.drift import drifted_fields
from core.manifests import desired_documents
from core.records import DomainRecord
from core.status import DomainStatus
from core.sync import Synced, format_synced
from db.service import DomainService
from stack.automation import ISSUER_FILE, EnvironmentStack, Progress, RunSummary
from stack.export import render_files


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
    stack: EnvironmentStack, kube: KubeClient, records: Sequence[DomainRecord]
) -> list[Drift]:
    """Objects the stack holds whose live copy no longer says what the rows declare."""
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


def kube_client_for(stack: EnvironmentStack) -> KubeClient | None:
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
    env = stack.stack_name
    recovered: tuple[str, ...] = ()
    with span(tracer, "reconcile_environment", env=env, stage="reconcile"):
        if recover_first:
            with span(tracer, "pulumi.recover", env=env):
                recovered = tuple(stack.recover())
        records = load_records()
        drift: list[Drift] = []
        kube = kube_client_for(stack)
        if kube is not None:
            with span(tracer, "kubernetes.drift", env=env):
                drift = detect_drift(stack, kube, records)
        digest = stack.desired_digest(records)
        skipped = None
        if skip_unchanged and not recover_first and not confirm_deletions and not drift:
            skipped = skip_reason(
                stack.last_run(), digest, now=now(), full_pass_every=full_pass_every
            )
        ran_at = now()
        if skipped is not None:
            # No engine run; the files are still exported and published, so a
            # hand edit in nm-kube-config is repaired all the same.
            summary = _skipped_summary(stack, records)
        else:
            with span(tracer, "pulumi.up", env=env):
                summary = stack.up(
                    records,
                    allow_empty=allow_empty,
                    confirm_deletions=confirm_deletions,
                    progress=progress,
                    # Hand-deleted objects come back through the refresh; hand-edited
                    # ones are re-created, since the provider's diff may not see the edit.
                    replace=[d.urn for d in drift if d.fields],
                    hold_refused=hold_refused,
                )
        with span(tracer, "export", env=env):
            objects = stack.state_objects()
            files = render_files(objects, environment=env)
        if kube is not None and record_synced is not None:
            record_synced(synced_versions(objects))
        published = None
        if git is not None:
            with span(tracer, "git.push", env=env):
                published = git.publish(stack.config.manifest_root, files)
        if record_removed is not None:
            present = {o["slug"] for o in objects}
            record_removed(present, published.commit if published else None)
        if summary.held_tenants:
            stack.forget_run()  # the stack still differs from the rows: run next time
        elif skipped is None:
            stack.record_run(digest, at=ran_at)
    return ReconcileReport(
        summary=summary,
        files=files,
        published=published,
        duration_seconds=time.monotonic() - started,
        recovered=recovered,
        drift=tuple(drift),
        adoption=tuple(step.line() for step in published.adoption) if published else (),
        skipped=skipped,
    )


def _skipped_summary(stack: EnvironmentStack, records: Sequence[DomainRecord]) -> RunSummary:
    """The summary of a run whose engine pass was skipped: the stack holds the rows."""
    desired = sorted(r.prefix for r in records if r.deployable)
    return RunSummary(
        environment=stack.stack_name,
        operation="skipped",
        counts=dict.fromkeys(("create", "update", "replace", "delete", "same"), 0),
        tenants=[],
        desired_tenants=desired,
        stack_tenants_before=desired,
    )
