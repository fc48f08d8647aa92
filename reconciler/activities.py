"""Temporal activities: the thin I/O layer between the workflows and the adapters.

One class holds the clients (database service, Pulumi stacks, Git, DNS, TLS,
PostHog, OpenTelemetry, Temporal); every activity takes one payload dataclass
and returns one, and is safe to retry:
- record_status is a conditional write (expected status), so a retry after a
  lost response finds the row already moved and reports it;
- verify_cname and check_caa also write what they saw into their own part of
  verification_details (core.records), refreshing last_checked_at: a same-status
  write conditional on the row's status and version, skipped when it moved on;
- reconcile_environment recovers a stale stack lock / pending operations left
  by a killed attempt before it runs `up`, and Git publishing starts from a
  clean reset of the worktree, so a second attempt converges on the same state.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from opentelemetry.trace import Tracer
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from adapters.dns import CaaLookupFailed, DnsSettings, check_caa, cname_matches, lookup_cname
from adapters.gitops import GitOpsError, GitOpsRepo, PublishResult
from adapters.kube import ISTIO, KubeClient, KubeError, ObjectVersion
from adapters.telemetry import Analytics, EventName, span
from adapters.tls import ProbeTarget, check_certificate, probe_https
from core.config import ACME_CHALLENGE_LABEL
from core.errors import PortalDomainsError
from core.manifests import resource_name
from core.records import CAA_CHECK, CHALLENGE_CHECK, CNAME_CHECK
from core.status import DomainStatus
from core.sync import Synced, parse_synced, routing_not_accepted
from db.errors import DomainNotFound, StaleStatus
from db.service import PLATFORM_LOG, REMOVAL, REMOVAL_HELD, DomainService
from reconciler import payloads as p
from reconciler.environment_reconcile import (
    all_records,
    kube_client_for,
    publish_shards,
    reconcile_once,
    run_shard,
    skipped_text,
)
from reconciler.errors import to_application_error
from reconciler.workflows import EnvironmentReconcileWorkflow
from reconciler.workflows.common import one_line
from stack.automation import RefusedRun, RunSummary
from stack.shards import EnvironmentStacks

HEARTBEAT_SECONDS = 2.0
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class ProbeSettings:
    """Where the TLS/HTTPS probes connect (tests and the demo use loopback)."""

    port: int = 443
    connect_address: str | None = None
    ca_bundle: str | None = None
    timeout_seconds: float = 5.0

    def target(self, host: str) -> ProbeTarget:
        return ProbeTarget(
            host=host,
            port=self.port,
            connect_address=self.connect_address,
            ca_bundle=self.ca_bundle,
            timeout_seconds=self.timeout_seconds,
        )


@dataclass(frozen=True, kw_only=True)
class ActivityDependencies:
    domains: DomainService
    stack_for: Callable[[str], EnvironmentStacks]
    git_for: Callable[[str], GitOpsRepo]
    kube_for: Callable[[str], KubeClient | None] = lambda _environment: None
    dns: DnsSettings
    probe: ProbeSettings
    analytics: Analytics
    tracer: Tracer
    client: Client
    task_queue: str
    ca_domains: tuple[str, ...] = ("letsencrypt.org",)
    debounce_seconds: float = 2.0
    heartbeat_timeout_seconds: float = 60.0
    # The engine is skipped while nothing changed, but runs at least this often.
    full_pass_every: timedelta = timedelta(hours=1)


# The action of the platform audit row each reconcile attempt writes.
RECONCILE_AUDIT_ACTION = "reconcile"


class DomainActivities:
    def __init__(self, deps: ActivityDependencies) -> None:
        self.deps = deps
        self.reconcile_runs = 0  # observed by tests and benchmarks

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.load_domain,
            self.record_status,
            self.verify_cname,
            self.check_caa,
            self.request_reconcile,
            self.reconcile_environment,
            self.environment_shards,
            self.reconcile_shard,
            self.publish_environment,
            self.check_certificate,
            self.probe_https,
            self.emit_event,
        ]

    # ------------------------------------------------------------------ database
    @activity.defn(name=p.LOAD_DOMAIN)
    def load_domain(self, inp: p.LoadDomainInput) -> p.LoadDomainResult:
        try:
            view = self.deps.domains.get(uuid.UUID(inp.tenant_id))
        except DomainNotFound:
            return p.LoadDomainResult(domain=None)
        delegation = (
            self.deps.stack_for(inp.environment).config.challenge_delegation(
                domain=view.domain, prefix=view.canonical_prefix
            )
            if inp.environment
            else None
        )
        return p.LoadDomainResult(
            domain=p.DomainSnapshot(
                tenant_id=str(view.tenant_id),
                domain=view.domain,
                canonical_host=view.canonical_host,
                prefix=view.canonical_prefix,
                status=view.status.value,
                status_message=view.status_message,
                version=view.version,
                challenge_host=delegation.name if delegation else "",
                challenge_target=delegation.target if delegation else "",
                requested_at=view.requested_at.isoformat() if view.requested_at else "",
            )
        )

    @activity.defn(name=p.RECORD_STATUS)
    def record_status(self, inp: p.RecordStatusInput) -> p.RecordStatusResult:
        tenant = uuid.UUID(inp.tenant_id)
        with span(
            self.deps.tracer,
            "record_status",
            tenant_id=inp.tenant_id,
            domain=inp.domain or "",
            stage=inp.new_status,
        ):
            try:
                if inp.domain is not None:
                    current = self.deps.domains.get(tenant)
                    if current.domain != inp.domain:
                        # the tenant asked for another domain meanwhile
                        raise StaleStatus(
                            tenant_id=tenant,
                            expected_status=DomainStatus(inp.expected_status),
                            actual_status=current.status,
                            expected_version=None,
                            actual_version=current.version,
                        )
                view = self.deps.domains.record_status(
                    tenant,
                    expected_status=DomainStatus(inp.expected_status),
                    new_status=DomainStatus(inp.new_status),
                    message=inp.message,
                    details=dict(inp.details) if inp.details else None,
                    actor="reconciler",
                )
            except PortalDomainsError as err:
                raise to_application_error(err) from err
        return p.RecordStatusResult(status=view.status.value, version=view.version, changed=True)

    # ------------------------------------------------------------------ DNS
    @activity.defn(name=p.VERIFY_CNAME)
    def verify_cname(self, inp: p.VerifyCnameInput) -> p.VerifyCnameResult:
        with span(
            self.deps.tracer,
            "dns.verify_cname",
            tenant_id=inp.tenant_id,
            domain=inp.domain,
            stage="verifying_dns",
        ):
            observation = lookup_cname(inp.domain, settings=self.deps.dns)
        matches = cname_matches(observation, inp.expected)
        self._record_check(
            inp.tenant_id,
            observation.domain,
            CNAME_CHECK,
            {
                "name": observation.domain,
                "expected": inp.expected,
                "observed": observation.observed,
                "ttl": observation.ttl,
                "checked_at": datetime.now(UTC).isoformat(),
                "ok": matches,
                "error": observation.error,
            },
        )
        return p.VerifyCnameResult(
            matches=matches,
            observed=observation.observed,
            error=observation.error,
            ttl=observation.ttl,
        )

    @activity.defn(name=p.CHECK_CAA)
    def check_caa(self, inp: p.CheckCaaInput) -> p.CheckCaaResult:
        with span(
            self.deps.tracer,
            "dns.check_caa",
            tenant_id=inp.tenant_id,
            domain=inp.domain,
            stage="verifying_dns",
        ):
            result = check_caa(inp.domain, ca_domains=self.deps.ca_domains, settings=self.deps.dns)
        self._record_check(
            inp.tenant_id,
            inp.domain,
            CAA_CHECK,
            {
                "ok": result.allowed,
                "message": result.message,
                "checked_at": datetime.now(UTC).isoformat(),
                "lookup_failed": result.lookup_failed,
            },
        )
        if result.lookup_failed:
            # CAs refuse to issue while CAA cannot be read, but it is usually
            # transient: let Temporal retry instead of failing the domain.
            raise to_application_error(CaaLookupFailed(result.message))
        return p.CheckCaaResult(allowed=result.allowed, message=result.message)

    def _record_check(self, tenant_id: str, name: str, part: str, check: dict[str, Any]) -> None:
        """Write one check's result into its part of the tenant's verification_details.

        A same-status write (it refreshes last_checked_at, bumps no version) on the
        row as it was read: a row that moved on meanwhile (another hostname, another
        status) is left alone. `name` decides the part: a CNAME check of
        `_acme-challenge.<domain>` is the challenge_cname part.
        """
        tenant = uuid.UUID(tenant_id)
        name = name.rstrip(".").lower()
        try:
            view = self.deps.domains.get(tenant)
            if part == CNAME_CHECK and name == f"{ACME_CHALLENGE_LABEL}.{view.domain}":
                part = CHALLENGE_CHECK
            elif name != view.domain:
                return  # a check of a hostname the tenant no longer has
            self.deps.domains.record_status(
                tenant,
                expected_status=view.status,
                new_status=view.status,
                message=view.status_message,
                details={part: check},
                expected_version=view.version,
                actor="reconciler",
            )
        except (PortalDomainsError, SQLAlchemyError) as err:
            # The workflow acts on the check's result, returned either way; a lost
            # bookkeeping write must not fail the check (its retries are few).
            activity.logger.warning("%s check of %s not recorded: %s", part, name, err)

    # ------------------------------------------------------------------ TLS / HTTPS
    @activity.defn(name=p.CHECK_CERTIFICATE)
    def check_certificate(self, inp: p.CertificateCheckInput) -> p.CertificateCheckResult:
        kube = self.deps.kube_for(inp.environment) if inp.environment else None
        with span(
            self.deps.tracer,
            "tls.check_certificate",
            tenant_id=inp.tenant_id,
            domain=inp.domain,
            stage="certificate_issuing",
        ):
            if kube is not None:
                return self._certificate_from_cluster(inp, kube)
            seen = check_certificate(self.deps.probe.target(inp.domain))
        return p.CertificateCheckResult(
            ok=seen.ok,
            message=seen.message,
            not_after=seen.not_after.isoformat() if seen.not_after else None,
        )

    def _certificate_from_cluster(
        self, inp: p.CertificateCheckInput, kube: KubeClient
    ) -> p.CertificateCheckResult:
        """Cluster mode: cert-manager's Ready condition decides, and its reason is shown."""
        view = self.deps.domains.get(uuid.UUID(inp.tenant_id))
        config = self.deps.stack_for(inp.environment).config
        try:
            state = kube.certificate_state(
                config.certificate_namespace, resource_name(view.canonical_prefix), inp.domain
            )
        except KubeError as err:
            raise to_application_error(err) from err
        if state.ready:
            return p.CertificateCheckResult(ok=True, message="Ready", not_after=state.not_after)
        detail = f": {state.message}" if state.message else ""
        return p.CertificateCheckResult(
            ok=False, message=f"cert-manager: {state.reason}{detail}", failing=state.failing
        )

    @activity.defn(name=p.PROBE_HTTPS)
    def probe_https(self, inp: p.HttpsProbeInput) -> p.HttpsProbeResult:
        kube = self.deps.kube_for(inp.environment) if inp.environment else None
        with span(
            self.deps.tracer,
            "https.probe",
            tenant_id=inp.tenant_id,
            domain=inp.domain,
            stage="deploying",
        ):
            if kube is not None:
                waiting = self._routing_not_accepted(inp, kube)
                if waiting is not None:
                    return p.HttpsProbeResult(ok=False, status=None, message=waiting)
            result = probe_https(self.deps.probe.target(inp.domain))
        return p.HttpsProbeResult(ok=result.ok, status=result.status, message=result.message)

    def _routing_not_accepted(self, inp: p.HttpsProbeInput, kube: KubeClient) -> str | None:
        """Cluster mode: the Gateway and VirtualService we applied are what the cluster holds."""
        view = self.deps.domains.get(uuid.UUID(inp.tenant_id))
        config = self.deps.stack_for(inp.environment).config
        name = resource_name(view.canonical_prefix)
        try:
            live = {
                "Gateway": _synced(
                    kube.object_version(
                        ISTIO, "gateways", "Gateway", config.gateway_namespace, name
                    )
                ),
                "VirtualService": _synced(
                    kube.object_version(
                        ISTIO,
                        "virtualservices",
                        "VirtualService",
                        config.virtual_service_namespace,
                        name,
                    )
                ),
            }
        except KubeError as err:
            raise to_application_error(err) from err
        reason = routing_not_accepted(parse_synced(view.last_synced_resource_version), live)
        return f"routing not in place yet: {reason}" if reason else None

    # ------------------------------------------------------------------ events
    @activity.defn(name=p.EMIT_EVENT)
    def emit_event(self, inp: p.EmitEventInput) -> None:
        event: EventName = inp.event  # type: ignore[assignment]
        self.deps.analytics.capture(
            event,
            distinct_id=inp.tenant_id,
            properties={"tenant_id": inp.tenant_id, **inp.properties},
        )

    def _audit_run(self, env: str, outcome: str, detail: dict[str, Any]) -> None:
        """One row per reconcile attempt in the platform's audit log (the console's runs).

        Bookkeeping: a database hiccup here is logged and never fails the run.
        """
        try:
            self.deps.domains.audit_operator_action(
                PLATFORM_LOG,
                RECONCILE_AUDIT_ACTION,
                "reconciler",
                outcome=outcome,
                detail={"environment": env, **detail},
            )
        except (PortalDomainsError, SQLAlchemyError, ValueError) as err:
            activity.logger.warning("the reconcile run of %s was not audited: %s", env, err)

    def _failed(
        self, env: str, err: PortalDomainsError, attempt: int, run_id: str, duration: float
    ) -> None:
        """The failure event, sent like `portal_domain.reconciled` (one per attempt)."""
        self._audit_run(
            env,
            "rejected",
            {
                "run_id": run_id,
                "attempt": attempt,
                "duration_seconds": round(duration, 2),
                "code": err.code,
                "reason": " ".join(str(err).split())[:300],
            },
        )
        self.deps.analytics.capture(
            "portal_domain.reconcile_failed",
            distinct_id=f"environment:{env}",
            properties={
                "env": env,
                "code": err.code,
                "retryable": err.retryable,
                "attempt": attempt,
                "reason": " ".join(str(err).split())[:300],
            },
        )

    def _mark_held(self, slugs: Sequence[str], env: str, reason: str) -> None:
        """Tell the disabled tenants among `slugs` that their removal waits for an operator."""
        message = _held_message(env)
        for view in self.deps.domains.list(DomainStatus.DISABLED):
            if view.canonical_prefix not in slugs:
                continue
            if view.status_message == message:
                continue
            try:
                self.deps.domains.record_status(
                    view.tenant_id,
                    expected_status=DomainStatus.DISABLED,
                    new_status=DomainStatus.DISABLED,
                    message=message,
                    details={
                        **(view.verification_details or {}),
                        REMOVAL: REMOVAL_HELD,
                        "held_reason": reason[:500],
                    },
                    actor="reconciler",
                )
            except PortalDomainsError as err:  # moved on meanwhile: nothing to say
                activity.logger.info("held note for %s not written: %s", view.tenant_id, err)

    # ------------------------------------------------------------------ reconcile
    @activity.defn(name=p.REQUEST_RECONCILE)
    async def request_reconcile(self, inp: p.RequestReconcileInput) -> None:
        """Signal-with-start the environment workflow; duplicates are deduplicated there."""
        await self.deps.client.start_workflow(
            EnvironmentReconcileWorkflow.run,
            p.EnvironmentState(
                environment=inp.environment,
                debounce_seconds=self.deps.debounce_seconds,
                heartbeat_timeout_seconds=self.deps.heartbeat_timeout_seconds,
            ),
            id=p.reconcile_workflow_id(inp.environment),
            task_queue=self.deps.task_queue,
            start_signal="request",
            start_signal_args=[inp.request],
        )

    @activity.defn(name=p.RECONCILE_ENVIRONMENT)
    async def reconcile_environment(self, inp: p.ReconcileEnvironmentInput) -> p.ReconcileOutcome:
        info = activity.info()
        # The copied context carries the activity's logger context (workflow and
        # run ids) into the thread that runs Pulumi.
        context = contextvars.copy_context()
        work = asyncio.get_running_loop().run_in_executor(
            None, context.run, self._reconcile_blocking, inp, info.attempt
        )
        # Pulumi runs in a thread; keep heartbeating so a killed worker is noticed
        # within the heartbeat timeout and the retry starts with recovery.
        while True:
            done, _ = await asyncio.wait({work}, timeout=HEARTBEAT_SECONDS)
            if done:
                return work.result()
            activity.heartbeat(inp.run_id)

    def _reconcile_blocking(
        self, inp: p.ReconcileEnvironmentInput, attempt: int
    ) -> p.ReconcileOutcome:
        env = inp.environment
        self.reconcile_runs += 1
        started = time.monotonic()
        try:
            report = reconcile_once(
                stack=self.deps.stack_for(env),
                load_records=lambda: all_records(self.deps.domains),
                git=self.deps.git_for(env),
                tracer=self.deps.tracer,
                # a previous attempt may have died mid-update: lock, pending ops
                recover_first=attempt > 1,
                confirm_deletions=inp.confirm_deletions,
                allow_empty=inp.allow_empty,
                record_synced=self.deps.domains.record_synced_versions,
                # A refused deletion must not stall every other tenant's change.
                hold_refused=True,
                # No engine run when the desired state equals the last run's.
                skip_unchanged=True,
                full_pass_every=self.deps.full_pass_every,
                record_removed=lambda present, commit: self.deps.domains.record_removals(
                    present, environment=env, commit=commit
                ),
            )
        except RefusedRun as err:
            self._failed(env, err, attempt, inp.run_id, time.monotonic() - started)
            raise to_application_error(err, prefix="refused: ") from err
        except GitOpsError as err:
            self._failed(env, err, attempt, inp.run_id, time.monotonic() - started)
            raise to_application_error(err, prefix="git: ") from err
        except PortalDomainsError as err:
            self._failed(env, err, attempt, inp.run_id, time.monotonic() - started)
            raise to_application_error(err) from err
        if report.recovered:
            activity.logger.warning(
                "attempt %s of %s recovered the stack: %s",
                attempt,
                inp.run_id,
                "; ".join(report.recovered),
            )
        return self._finish(
            env,
            inp.run_id,
            attempt,
            summary=report.summary,
            published=report.published,
            duration=report.duration_seconds,
            skipped=report.skipped,
        )

    def _finish(
        self,
        env: str,
        run_id: str,
        attempt: int,
        *,
        summary: RunSummary,
        published: PublishResult | None,
        duration: float,
        skipped: str | None,
        shards: tuple[p.ShardOutcome, ...] = (),
    ) -> p.ReconcileOutcome:
        """The outcome of a reconcile that published: held notes, audit row, event."""
        counts = summary.counts
        held = summary.held_tenants
        failed = [s for s in shards if not s.ok]
        held_note = (
            f"; {len(held)} deletion(s) held for confirmation ({', '.join(held)}): "
            f"{summary.held_reason}. Confirm with "
            f"`portal-domains reconcile --env {env} --yes`"
            if held
            else ""
        )
        failed_note = "".join(f"; {s.stack} failed: {one_line(s.message)}" for s in failed)
        if held:
            activity.logger.warning("%s%s", env, held_note)
            self._mark_held(held, env, summary.held_reason or "")
        outcome = p.ReconcileOutcome(
            ok=not failed,
            message=(
                f"{env}: {skipped}"
                if skipped
                else f"{env}: {counts['create']} created, {counts['update']} updated, "
                f"{counts['replace']} replaced, {counts['delete']} deleted{held_note}{failed_note}"
            ),
            held_tenants=tuple(held),
            held_reason=summary.held_reason,
            created=counts["create"],
            updated=counts["update"],
            replaced=counts["replace"],
            deleted=counts["delete"],
            commit=published.commit if published else None,
            changed_slugs=published.changed_slugs if published else (),
            deployed_tenants=tuple(summary.desired_tenants),
            duration_seconds=duration,
            adoption=tuple(step.line() for step in published.adoption) if published else (),
            skipped=skipped,
            policy_violations=tuple(v for s in failed for v in s.policy_violations),
            shards=shards,
        )
        self._audit_run(
            env,
            "ok" if outcome.ok else "rejected",
            {
                "run_id": run_id,
                "attempt": attempt,
                "duration_seconds": round(duration, 2),
                "message": outcome.message,
                "created": outcome.created,
                "updated": outcome.updated,
                "replaced": outcome.replaced,
                "deleted": outcome.deleted,
                "changed": list(outcome.changed_slugs),
                "commit": outcome.commit,
                "held": list(outcome.held_tenants),
                "skipped": bool(outcome.skipped),
                **({"shards": [s.stack for s in shards if s.skipped is None]} if shards else {}),
            },
        )
        self.deps.analytics.capture(
            "portal_domain.reconciled",
            distinct_id=f"environment:{env}",
            properties={
                "env": env,
                "duration_seconds": round(duration, 2),
                "created": outcome.created,
                "updated": outcome.updated,
                "replaced": outcome.replaced,
                "deleted": outcome.deleted,
                "commit": outcome.commit,
            },
        )
        return outcome

    # ------------------------------------------------------------ sharded reconcile
    async def _in_thread(self, detail: str, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking Pulumi/Git work in a thread, heartbeating meanwhile, so a
        killed worker is noticed within the heartbeat timeout and retried elsewhere."""
        context = contextvars.copy_context()
        work = asyncio.get_running_loop().run_in_executor(None, context.run, fn, *args)
        while True:
            done, _ = await asyncio.wait({work}, timeout=HEARTBEAT_SECONDS)
            if done:
                return work.result()
            activity.heartbeat(detail)

    @activity.defn(name=p.ENVIRONMENT_SHARDS)
    def environment_shards(self, environment: str) -> int:
        """How many stacks (shards) the environment's config spreads its tenants over,
        once they are laid out for it (refused while a reshard is due)."""
        stacks = self.deps.stack_for(environment)
        try:
            stacks.check_layout()
        except RefusedRun as err:
            raise to_application_error(err, prefix="refused: ") from err
        return len(stacks.shards)

    @activity.defn(name=p.RECONCILE_SHARD)
    async def reconcile_shard(self, inp: p.ReconcileShardInput) -> p.ShardOutcome:
        """One shard's run: skipped when unchanged, else one `up` (recovering first on a
        retry). Any worker may run any shard; the workflow runs each shard once at a time."""
        return await self._in_thread(
            f"{inp.run_id}/{inp.shard}",
            self._shard_blocking,
            inp,
            activity.info().attempt,
            # Temporal's default worker identity: which process ran the shard.
            f"{os.getpid()}@{socket.gethostname()}",
        )

    def _shard_blocking(
        self, inp: p.ReconcileShardInput, attempt: int, worker: str
    ) -> p.ShardOutcome:
        env = inp.environment
        stacks = self.deps.stack_for(env)
        if not 0 <= inp.shard < len(stacks.shards):
            raise ApplicationError(
                f"{env} has {len(stacks.shards)} shard(s), not {inp.shard + 1}: its shard "
                "count changed during the run",
                type="shard_count_changed",
            )
        shard = stacks.shards[inp.shard]
        self.reconcile_runs += 1
        started = time.monotonic()
        try:
            run = run_shard(
                shard,
                all_records(self.deps.domains),
                kube=kube_client_for(stacks),
                tracer=self.deps.tracer,
                recover_first=attempt > 1,
                skip_unchanged=True,
                allow_empty=inp.allow_empty,
                confirm_deletions=inp.confirm_deletions,
                hold_refused=True,
                full_pass_every=self.deps.full_pass_every,
            )
        except RefusedRun as err:
            self._failed(shard.stack_name, err, attempt, inp.run_id, time.monotonic() - started)
            raise to_application_error(err, prefix="refused: ") from err
        except PortalDomainsError as err:
            self._failed(shard.stack_name, err, attempt, inp.run_id, time.monotonic() - started)
            raise to_application_error(err) from err
        if run.recovered:
            activity.logger.warning(
                "attempt %s of %s recovered %s: %s",
                attempt,
                inp.run_id,
                shard.stack_name,
                "; ".join(run.recovered),
            )
        counts = run.summary.counts
        return p.ShardOutcome(
            shard=inp.shard,
            stack=shard.stack_name,
            ok=True,
            skipped=run.skipped,
            created=counts.get("create", 0),
            updated=counts.get("update", 0),
            replaced=counts.get("replace", 0),
            deleted=counts.get("delete", 0),
            desired_tenants=tuple(run.summary.desired_tenants),
            held_tenants=tuple(run.summary.held_tenants),
            held_reason=run.summary.held_reason,
            recovered=run.recovered,
            worker=worker,
        )

    @activity.defn(name=p.PUBLISH_ENVIRONMENT)
    async def publish_environment(self, inp: p.PublishEnvironmentInput) -> p.ReconcileOutcome:
        """Every shard's files in one commit, after the shards ran (or failed)."""
        return await self._in_thread(
            inp.run_id, self._publish_blocking, inp, activity.info().attempt
        )

    def _publish_blocking(self, inp: p.PublishEnvironmentInput, attempt: int) -> p.ReconcileOutcome:
        env = inp.environment
        started = time.monotonic()
        stacks = self.deps.stack_for(env)
        outcomes = {o.shard: o for o in inp.shards}
        shard_objects = []
        for index, shard in enumerate(stacks.shards):
            outcome = outcomes.get(index)
            recorded = (
                shard.recorded_objects()
                if outcome is not None and outcome.ok and not outcome.held_tenants
                else None
            )
            # A failed or holding shard has no record: its state says what it holds.
            shard_objects.append(recorded if recorded is not None else shard.state_objects())
        kube = kube_client_for(stacks)
        try:
            _, published = publish_shards(
                stacks.config,
                shard_objects,
                git=self.deps.git_for(env),
                tracer=self.deps.tracer,
                record_synced=self.deps.domains.record_synced_versions if kube else None,
                record_removed=lambda present, commit: self.deps.domains.record_removals(
                    present, environment=env, commit=commit
                ),
            )
        except GitOpsError as err:
            self._failed(env, err, attempt, inp.run_id, time.monotonic() - started)
            raise to_application_error(err, prefix="git: ") from err
        counts = {
            op: sum(getattr(o, field) for o in inp.shards)
            for op, field in (
                ("create", "created"),
                ("update", "updated"),
                ("replace", "replaced"),
                ("delete", "deleted"),
            )
        }
        held = sorted({t for o in inp.shards for t in o.held_tenants})
        reasons = sorted({o.held_reason for o in inp.shards if o.held_reason})
        summary = RunSummary(
            environment=env,
            operation="up",
            counts=counts,
            tenants=[],
            desired_tenants=sorted({t for o in inp.shards for t in o.desired_tenants}),
            stack_tenants_before=[],
            held_tenants=held,
            held_reason="; ".join(reasons) or None,
        )
        return self._finish(
            env,
            inp.run_id,
            attempt,
            summary=summary,
            published=published,
            duration=time.monotonic() - started,
            skipped=skipped_text([o.skipped if o.ok else None for o in inp.shards]),
            shards=inp.shards,
        )


def _held_message(env: str) -> str:
    return (
        f"Removal requested; an operator must confirm it in {env} before the certificate, "
        "gateway and routes are removed (a safety limit on deletions was reached)."
    )


def _synced(found: ObjectVersion | None) -> Synced | None:
    if found is None:
        return None
    return Synced(resource_version=found.resource_version, generation=found.generation)
