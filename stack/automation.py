"""Automation-API wrapper: preview, up, refresh and recovery for one environment.

Used by the CLI and by the reconciler's activity. Every run gets a snapshot of
domain records that the caller already loaded (all of them, any status: the
program deploys the deployable ones, and the others explain deletions); the program is the inline
`stack.program.build`. Safety guards run before any `up` changes anything:

- an empty desired state while the stack still holds tenants is refused unless
  `allow_empty` (a database outage that reads zero rows is not "delete all");
- removing more tenants than the stack config's `deletionCap` is refused unless
  `confirm_deletions`.

A refused run raises RefusedRun before `up` starts, so it changes nothing.

One engine pass: the guards need only the tenants the state holds and the
desired ones, and the policy pack's rules also run in-process over the
documents the program will declare (policies.evaluate). When neither objects,
`up` runs directly (the pack still on); only a run something objects to pays
for a `preview` first, which then decides with the engine's own messages
whether to hold the refused deletions or to refuse the run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from core.config import StackConfig
from core.digest import RecordedRun, StateObjects, desired_digest
from core.errors import ErrorKind, PortalDomainsError
from core.manifests import desired_documents, desired_state
from core.records import DomainRecord
from core.shards import ISSUER_SHARD, shard_of
from core.shards import stack_name as shard_stack_name
from core.text import redact_urls
from core.violations import PolicyViolation
from stack import program
from stack.run_records import FileRunRecords, RunRecords
from stack.toolchain import REPO_ROOT, PulumiEnvironment
from stack.workspace import open_stack

log = logging.getLogger(__name__)

PROJECT = "portal-domains"
POLICY_PACK = REPO_ROOT / "policies"


@functools.cache
def code_fingerprint() -> str:
    """A hash of the code that turns rows into resources and checks them.

    Part of the change digest: after an upgrade of the program, the manifests or
    the policy pack, the next reconcile runs the engine even if no row changed.
    """
    digest = hashlib.sha256()
    for package in ("core", "stack", "policies"):
        for source in sorted((REPO_ROOT / package).rglob("*.py")):
            digest.update(str(source.relative_to(REPO_ROOT)).encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()


Progress = Callable[[str], None]
_OPS = ("create", "update", "replace", "delete")
_REPLACE_OPS = {
    "replace",
    "create-replacement",
    "delete-replaced",
    "create-before-replace",
    "delete-before-replace",
}


# Steps a run that holds its deletions still applies (never "delete", "same", "refresh").
_APPLY_OPS = frozenset({"create", "update", "import", *_REPLACE_OPS})


class StackOperationError(PortalDomainsError, RuntimeError):
    """Pulumi failed; `retryable` says whether retrying the same input can help."""

    code = "stack_operation_failed"

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.retryable = not permanent

    @property
    def permanent(self) -> bool:
        return not self.retryable


class PolicyViolationsError(StackOperationError):
    """The policy pack refused the run; `violations` says which rules, as data."""

    code = "policy_violation"
    kind = ErrorKind.REFUSED

    def __init__(self, violations: Sequence[PolicyViolation]) -> None:
        super().__init__(
            "policy violations blocked the run:\n  " + "\n  ".join(v.line() for v in violations),
            permanent=True,
        )
        self.violations = tuple(violations)


def violation_of(event: auto.PolicyEvent) -> PolicyViolation:
    # The engine's message is "<rule description>\n<violation message>": keep the latter.
    lines = [line.strip() for line in event.message.splitlines() if line.strip()]
    message = " ".join(lines[1:]) if len(lines) > 1 else " ".join(lines)
    return PolicyViolation(
        policy=event.policy_name,
        enforcement_level=str(event.enforcement_level),
        resource_urn=event.resource_urn or "",
        message=message,
    )


class RefusedRun(PortalDomainsError, RuntimeError):
    """A safety guard refused the run; nothing was changed. `code` names the guard."""

    kind = ErrorKind.REFUSED

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, kw_only=True)
class TenantChange:
    slug: str
    operations: dict[str, int]  # create/update/replace/delete -> resource count

    @property
    def kind(self) -> str:
        ops = {op for op, n in self.operations.items() if n}
        if ops == {"create"}:
            return "create"
        if ops == {"delete"}:
            return "delete"
        return "replace" if "replace" in ops else "update"


ISSUER_FILE = program.ISSUER_RESOURCE  # <manifest root>/cluster-issuer.yaml


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    environment: str
    operation: str  # preview / up / refresh
    counts: dict[str, int]  # op -> resource count (custom resources only)
    tenants: list[TenantChange]
    desired_tenants: list[str]
    stack_tenants_before: list[str]
    policy_violations: list[PolicyViolation] = field(default_factory=list)
    duration_seconds: float = 0.0
    # slugs of tenants whose rows exist but are not deployable (disabled, DNS
    # not verified): their removal from the stack is explained by the database
    accounted_for: list[str] = field(default_factory=list)
    # Deletions a guard refused and this run left in the stack for an operator to
    # confirm (`portal-domains up --env E --yes`), and why.
    held_tenants: list[str] = field(default_factory=list)
    held_reason: str | None = None
    # Every resource URN with a step other than delete: what a run that holds the
    # deletions applies (`up --target`).
    apply_urns: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(self.counts.get(op, 0) for op in _OPS)

    @property
    def deleted_tenants(self) -> list[str]:
        return sorted(
            set(self.stack_tenants_before) - set(self.desired_tenants) - set(self.held_tenants)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "operation": self.operation,
            "counts": self.counts,
            "tenants": [
                {"slug": t.slug, "change": t.kind, "operations": t.operations} for t in self.tenants
            ],
            "desired_tenants": self.desired_tenants,
            "deleted_tenants": self.deleted_tenants,
            "held_tenants": self.held_tenants,
            "held_reason": self.held_reason,
            "policy_violations": [asdict(v) for v in self.policy_violations],
            "duration_seconds": round(self.duration_seconds, 2),
        }


_URN_NAME = re.compile(r"::(?P<name>[^:]+)$")


# policies.settings.DELETION_BUDGET (not imported: the pack is loaded only when used).
_DELETION_BUDGET_POLICY = "deletion-budget"


def _holdable(refused: RefusedRun | PolicyViolationsError) -> bool:
    """A refusal of deletions only: every mandatory violation is the deletion budget's."""
    if isinstance(refused, RefusedRun):
        return refused.code in ("deletion_cap", "empty_desired_state")
    mandatory = [v for v in refused.violations if v.mandatory]
    return bool(mandatory) and all(v.policy == _DELETION_BUDGET_POLICY for v in mandatory)


def _budget_reason(refused: PolicyViolationsError) -> str:
    budget = [v.message for v in refused.violations if v.policy == _DELETION_BUDGET_POLICY]
    return "deletion-budget: " + "; ".join(budget)


def _slug_of(urn: str) -> str | None:
    """Tenant slug from a child URN like ...::<slug>-certificate."""
    match = _URN_NAME.search(urn)
    if not match:
        return None
    name = match.group("name")
    for suffix in ("-certificate", "-gateway", "-virtualservice"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return None


class _EventCollector:
    """Turns engine events into per-tenant counts, progress lines and violations."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.per_tenant: dict[str, Counter[str]] = defaultdict(Counter)
        self.counts: Counter[str] = Counter()
        self.violations: list[PolicyViolation] = []
        self.diagnostics: list[str] = []
        self.steps: dict[str, set[str]] = defaultdict(set)  # every URN -> its step ops

    def apply_urns(self) -> list[str]:
        """URNs with a step other than a plain delete (creates, updates, replacements)."""
        return sorted(urn for urn, ops in self.steps.items() if ops & _APPLY_OPS)

    def __call__(self, event: auto.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            op = meta.op.value if hasattr(meta.op, "value") else str(meta.op)
            self.steps[meta.urn].add(op)
            if op in _REPLACE_OPS:
                op = "replace"
            slug = _slug_of(meta.urn)
            if slug is None or op not in _OPS:
                return
            # delete-before-replace emits several steps per resource; count once.
            key = f"{meta.urn}:{op}"
            if key in self.per_tenant[slug]:
                return
            self.per_tenant[slug][key] += 1
            self.counts[op] += 1
            if self.progress:
                self.progress(f"  {op:<8} {meta.type.split(':')[-1]:<15} {slug}")
        elif event.policy_event is not None:
            self.violations.append(violation_of(event.policy_event))
        elif event.diagnostic_event is not None:
            diag = event.diagnostic_event
            if diag.severity == "error":
                self.diagnostics.append(diag.message.strip())

    def tenants(self) -> list[TenantChange]:
        result = []
        for slug in sorted(self.per_tenant):
            ops: Counter[str] = Counter()
            for key in self.per_tenant[slug]:
                ops[key.rsplit(":", 1)[1]] += 1
            result.append(TenantChange(slug=slug, operations=dict(ops)))
        return result


def shard_config(config: StackConfig, shard: int) -> StackConfig:
    """What shard `shard`'s stack declares: the environment's ClusterIssuer only in one."""
    if shard == ISSUER_SHARD or not config.declare_issuer:
        return config
    return dataclasses.replace(config, declare_issuer=False)


class EnvironmentStack:
    """One stack of an environment (`staging`, or `staging-3` of a sharded one), inline.

    Every method takes all of the environment's rows and keeps those of its own
    shard (core.shards.shard_of), so callers never partition by hand.
    """

    def __init__(
        self,
        penv: PulumiEnvironment,
        config: StackConfig,
        *,
        work_dir: Path,
        policy_pack: Path | None = POLICY_PACK,
        policy_pack_config: Path | None = None,
        stack_name: str | None = None,
        shard: int = 0,
        run_records: RunRecords | None = None,
    ) -> None:
        self.penv = penv
        self.shard = shard
        self.run_records: RunRecords = run_records or FileRunRecords(work_dir)
        self.config = shard_config(config, shard)
        self.stack_name = stack_name or shard_stack_name(config.environment, shard, config.shards)
        self.work_dir = work_dir / "workspaces" / self.stack_name
        self.policy_pack = policy_pack
        self.policy_pack_config = policy_pack_config
        self._stack: auto.Stack | None = None

    @property
    def _live(self) -> bool | None:
        # In cluster mode the state is read back from the API server before every
        # diff, so a hand edit or a hand-deleted object is repaired by the next run.
        return True if self.config.mode == "cluster" else None

    # ------------------------------------------------------------------ plumbing
    def mine(self, records: Sequence[DomainRecord]) -> list[DomainRecord]:
        """The rows of this stack's shard."""
        count = self.config.shards
        if count == 1:
            return list(records)
        return [r for r in records if shard_of(r.tenant_id, count) == self.shard]

    def _open(self, records: Sequence[DomainRecord]) -> auto.Stack:
        """The stack, selected once per instance, with `records` as its inline program."""
        snapshot = tuple(records)
        config = self.config

        def run() -> None:
            program.build(snapshot, config)

        if self._stack is None:
            self._stack = open_stack(
                self.penv,
                project=PROJECT,
                stack=self.stack_name,
                program=run,
                work_dir=self.work_dir,
            )
        else:
            self._stack.workspace.program = run
        return self._stack

    def _policy_args(
        self, tenants_before: Sequence[str], tenants_excused: Sequence[str] = ()
    ) -> dict[str, Any]:
        """The pack and its config for this run.

        The config is generated from the stack config unless one was given; it
        carries the tenants the stack holds now, which `deletion-budget` needs
        (a stack policy sees only the new program, never the deletes), and those
        whose removal does not count against it (explained by the database, or held).
        """
        if self.policy_pack is None:
            return {}
        from policies.settings import write_policy_pack_config

        config_file = self.policy_pack_config or write_policy_pack_config(
            self.config,
            self.work_dir / "policy-pack-config.json",
            tenants_before=tenants_before,
            tenants_excused=tenants_excused,
        )
        return {"policy_packs": [str(self.policy_pack)], "policy_pack_configs": [str(config_file)]}

    # ------------------------------------------------------------- change digest
    def desired_digest(self, records: Sequence[DomainRecord]) -> str:
        """The digest of what `up` would declare for `records` (core.digest)."""
        return desired_digest(self.mine(records), self.config, code_fingerprint())

    @property
    def state_is_private(self) -> bool:
        """True for the embedded file backend of this work directory.

        A record kept on this host vouches for the stack only when nobody else can
        update that state. With a shared backend (PULUMI_BACKEND_URL: postgres://,
        s3://, a shared path) only a shared record store (`run_records.shared`,
        db.run_records) is trusted; with a host-local one every reconcile runs
        the engine.
        """
        return self.penv.state_is_private

    def _trusted(self) -> bool:
        return self.run_records.shared or self.state_is_private

    def recorded(self) -> tuple[RecordedRun, StateObjects | None] | None:
        """The last successful run and the state objects recorded with it, read once
        (None: unknown, or not trusted with this backend)."""
        return self.run_records.load(self.stack_name) if self._trusted() else None

    def last_run(self) -> RecordedRun | None:
        """The digest of the last successful run and when it ran (None: unknown)."""
        found = self.recorded()
        return found[0] if found else None

    def record_run(
        self, digest: str, *, at: datetime, objects: Sequence[dict[str, Any]] | None = None
    ) -> None:
        """After a successful up: what it declared, and (`objects`) the state objects
        after it, so a reconcile that skips this shard exports its files without
        reading the state."""
        run = RecordedRun(digest=digest, full_pass_at=at)
        self.run_records.save(self.stack_name, run, list(objects) if objects is not None else None)

    def recorded_objects(self) -> list[dict[str, Any]] | None:
        """The state objects recorded with the last successful run (None: unknown)."""
        found = self.recorded()
        return found[1] if found else None

    def forget_run(self) -> None:
        """The next reconcile runs the engine whatever the digest says."""
        self.run_records.forget(self.stack_name)

    def stack_tenants(self) -> list[str]:
        """Slugs of the tenants the stack's state currently holds."""
        return sorted({r["slug"] for r in self.state_objects() if r["slug"] != ISSUER_FILE})

    def state_objects(self) -> list[dict[str, Any]]:
        """The Kubernetes objects in the stack state: slug, kind and the object."""
        stack = self._open(())
        deployment = stack.export_stack().deployment or {}
        objects = []
        for res in deployment.get("resources", []):
            urn = res.get("urn", "")
            # The environment's ClusterIssuer is exported beside the tenants' files.
            slug = ISSUER_FILE if urn.endswith(f"::{program.ISSUER_RESOURCE}") else _slug_of(urn)
            if slug is None or not res.get("type", "").startswith("kubernetes:"):
                continue
            objects.append({"slug": slug, "urn": res["urn"], "outputs": res.get("outputs", {})})
        return objects

    def _wrap_error(self, exc: auto.CommandError, collector: _EventCollector) -> Exception:
        text = str(exc)
        if isinstance(exc, auto.ConcurrentUpdateError):
            return StackOperationError(
                f"stack {self.stack_name} is locked by another update; if no update runs, "
                "recover with `portal-domains recover --env ...`",
                permanent=False,
            )
        if any(v.mandatory for v in collector.violations):
            return PolicyViolationsError(collector.violations)
        detail = "\n".join(collector.diagnostics) or text[-2000:]
        # A postgres:// backend URL carries its password; it never reaches a message.
        return StackOperationError(f"pulumi failed: {redact_urls(detail)}", permanent=False)

    # ------------------------------------------------------------------ operations
    def preview(
        self,
        records: Sequence[DomainRecord],
        *,
        progress: Progress | None = None,
        replace: Sequence[str] = (),
        held: Sequence[str] = (),
    ) -> RunSummary:
        """What `up` would do; `held`: tenants whose deletion the run would leave alone."""
        records = self.mine(records)
        desired = [m.slug for m in desired_state(records, self.config)]
        before = self.stack_tenants()
        accounted_for = sorted({r.prefix for r in records if not r.deployable})
        stack = self._open(records)
        collector = _EventCollector(progress)
        try:
            result = stack.preview(
                on_event=collector,
                refresh=self._live,
                replace=list(replace) or None,
                **self._policy_args(before, sorted({*accounted_for, *held})),
            )
        except auto.CommandError as exc:
            raise self._wrap_error(exc, collector) from exc
        log.debug("preview change summary: %s", result.change_summary)
        return RunSummary(
            environment=self.stack_name,
            operation="preview",
            counts={op: collector.counts.get(op, 0) for op in _OPS},
            tenants=collector.tenants(),
            desired_tenants=desired,
            stack_tenants_before=before,
            policy_violations=collector.violations,
            accounted_for=accounted_for,
            held_tenants=sorted(held),
            apply_urns=collector.apply_urns(),
        )

    def check_guards(
        self, summary: RunSummary, *, allow_empty: bool, confirm_deletions: bool
    ) -> None:
        # Only deletions the database explains (a row that is disabled or not
        # verified) are trusted; tenants that simply vanished from the input
        # look like an outage or the wrong database.
        unexplained = sorted(
            set(summary.stack_tenants_before)
            - set(summary.desired_tenants)
            - set(summary.accounted_for)
        )
        if not summary.desired_tenants and unexplained and not allow_empty:
            raise RefusedRun(
                "empty_desired_state",
                f"the desired state is empty but stack {self.stack_name} holds "
                f"{len(summary.stack_tenants_before)} tenant(s), {len(unexplained)} of them "
                "with no database row saying why they should go; refusing to delete them all. "
                "If that is really intended, pass --allow-empty.",
            )
        deleted = summary.deleted_tenants
        if len(deleted) > self.config.deletion_cap and not confirm_deletions:
            raise RefusedRun(
                "deletion_cap",
                f"this run would remove {len(deleted)} tenant(s) "
                f"({', '.join(deleted[:10])}{'...' if len(deleted) > 10 else ''}), more than "
                f"deletionCap={self.config.deletion_cap}; confirm explicitly to proceed.",
            )

    def up(
        self,
        records: Sequence[DomainRecord],
        *,
        allow_empty: bool = False,
        confirm_deletions: bool = False,
        progress: Progress | None = None,
        replace: Sequence[str] = (),
        hold_refused: bool = False,
    ) -> RunSummary:
        """Apply `records`; `replace` names URNs to re-create (drifted objects).

        A deletion a guard refuses (the empty-state guard, `deletionCap`, the
        `deletion-budget` policy) raises RefusedRun / PolicyViolationsError, unless
        `hold_refused`: then the run applies everything else (`up --target`) and
        leaves those tenants in the stack, listed in `held_tenants`, until an
        operator confirms (`confirm_deletions`). The worker holds; the CLI asks.
        """
        self.forget_run()  # the stack may change: the next reconcile runs the engine
        records = self.mine(records)
        fast = self._direct_plan(
            records, replace=replace, allow_empty=allow_empty, confirm_deletions=confirm_deletions
        )
        if fast is not None:
            # Guards and policies pass on the state and the desired objects: one
            # engine pass (the `up`, with the pack on), no preview first.
            return self._apply(records, fast, progress=progress, replace=replace)
        planned = self._plan(
            records,
            replace=replace,
            allow_empty=allow_empty,
            confirm_deletions=confirm_deletions,
            hold_refused=hold_refused,
        )
        if planned.held_tenants:
            log.warning(
                "%s: holding the deletion of %s: %s",
                self.stack_name,
                ", ".join(planned.held_tenants),
                planned.held_reason,
            )
            if not planned.apply_urns:
                # Nothing but the held deletions: nothing to apply.
                return dataclasses.replace(planned, operation="up")
        return self._apply(records, planned, progress=progress, replace=replace)

    def plan(
        self,
        records: Sequence[DomainRecord],
        *,
        replace: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> RunSummary:
        """The preview of what the worker's run (`up(hold_refused=True)`) would do,
        with the deletions it would hold in `held_tenants` and why."""
        return self._plan(self.mine(records), replace=replace, progress=progress, hold_refused=True)

    def _direct_plan(
        self,
        records: Sequence[DomainRecord],
        *,
        replace: Sequence[str],
        allow_empty: bool,
        confirm_deletions: bool,
    ) -> RunSummary | None:
        """The plan of an `up` without a preview, when nothing would be refused.

        The guards need only the tenants the state holds and the desired ones; the
        pack's rules run in-process over the documents the program will declare
        (policies.evaluate). None when a guard or a mandatory rule objects: the
        preview path then decides, with the engine's own messages, to hold or refuse.
        """
        before = self.stack_tenants()
        desired = [m.slug for m in desired_state(records, self.config)]
        accounted_for = sorted({r.prefix for r in records if not r.deployable})
        planned = RunSummary(
            environment=self.stack_name,
            operation="plan",
            counts=dict.fromkeys(_OPS, 0),
            tenants=[],
            desired_tenants=desired,
            stack_tenants_before=before,
            accounted_for=accounted_for,
        )
        try:
            self.check_guards(planned, allow_empty=allow_empty, confirm_deletions=confirm_deletions)
        except RefusedRun:
            return None
        if self.policy_pack is not None and self._policy_objections(records, before, accounted_for):
            return None
        return planned

    def _policy_objections(
        self, records: Sequence[DomainRecord], before: Sequence[str], excused: Sequence[str]
    ) -> list[PolicyViolation]:
        from policies.evaluate import declared, evaluate
        from policies.settings import policy_pack_config

        if self.policy_pack_config is not None:
            pack_config = json.loads(self.policy_pack_config.read_text())
        else:
            pack_config = policy_pack_config(
                self.config, tenants_before=before, tenants_excused=excused
            )
        documents = desired_documents(records, self.config)
        found = evaluate(declared(documents, stack=self.stack_name), pack_config)
        return [v for v in found if v.mandatory]

    def _plan(
        self,
        records: Sequence[DomainRecord],
        *,
        replace: Sequence[str],
        progress: Progress | None = None,
        allow_empty: bool = False,
        confirm_deletions: bool = False,
        hold_refused: bool,
    ) -> RunSummary:
        """Preview and guards; a refused deletion raises, or with `hold_refused` is
        held: previewed again without it, its tenants in `held_tenants`."""
        try:
            planned = self.preview(records, replace=replace, progress=progress)
            self.check_guards(planned, allow_empty=allow_empty, confirm_deletions=confirm_deletions)
        except (RefusedRun, PolicyViolationsError) as refused:
            if not hold_refused or not _holdable(refused):
                raise
            desired = {m.slug for m in desired_state(records, self.config)}
            held = sorted(set(self.stack_tenants()) - desired)
            reason = str(refused) if isinstance(refused, RefusedRun) else _budget_reason(refused)
            planned = self.preview(records, replace=replace, held=held)
            # The held tenants' deletes are not part of what the run does.
            kept = [t for t in planned.tenants if t.slug not in held]
            counts = {op: sum(t.operations.get(op, 0) for t in kept) for op in _OPS}
            return dataclasses.replace(planned, held_reason=reason, tenants=kept, counts=counts)
        return planned

    def _apply(
        self,
        records: Sequence[DomainRecord],
        planned: RunSummary,
        *,
        progress: Progress | None,
        replace: Sequence[str],
    ) -> RunSummary:
        stack = self._open(records)
        collector = _EventCollector(progress)
        excused = sorted({*planned.accounted_for, *planned.held_tenants})
        try:
            result = stack.up(
                on_event=collector,
                refresh=self._live,
                replace=list(replace) or None,
                # Holding deletions: apply only the other steps.
                target=planned.apply_urns if planned.held_tenants else None,
                **self._policy_args(planned.stack_tenants_before, excused),
            )
        except auto.CommandError as exc:
            raise self._wrap_error(exc, collector) from exc
        duration = 0.0
        if result.summary.end_time and result.summary.start_time:
            duration = (result.summary.end_time - result.summary.start_time).total_seconds()
        return RunSummary(
            environment=self.stack_name,
            operation="up",
            counts={op: collector.counts.get(op, 0) for op in _OPS},
            tenants=collector.tenants(),
            desired_tenants=planned.desired_tenants,
            stack_tenants_before=planned.stack_tenants_before,
            policy_violations=collector.violations,
            duration_seconds=duration,
            accounted_for=planned.accounted_for,
            held_tenants=planned.held_tenants,
            held_reason=planned.held_reason,
        )

    def refresh(self, *, progress: Progress | None = None) -> dict[str, int]:
        """Read live objects back into the state (cluster mode only).

        In gitops mode there is no cluster to read from: the state is the
        source of truth and a refresh would only fail, so it is skipped.
        """
        self.forget_run()  # the stack may change: the next reconcile runs the engine
        if self.config.mode == "gitops":
            if progress:
                progress(f"{self.stack_name}: gitops mode has no cluster; nothing to refresh")
            return {}
        stack = self._open(())
        try:
            result = stack.refresh(
                clear_pending_creates=True,
                on_output=progress,
            )
        except auto.CommandError as exc:
            raise StackOperationError(
                f"refresh failed: {redact_urls(str(exc)[-2000:])}", permanent=False
            ) from exc
        return {str(op): n for op, n in (result.summary.resource_changes or {}).items()}

    def recover(self, *, progress: Progress | None = None) -> list[str]:
        """Repair what a crashed run leaves: a stale lock and pending operations.

        Only call when no other update of this stack can be running (the
        environment workflow serialises updates, so its own retry qualifies).
        """
        self.forget_run()  # the stack may change: the next reconcile runs the engine
        done: list[str] = []
        repaired = self._repair_checkpoint_files()
        if repaired:
            done.append(f"removed {repaired} half-written checkpoint file(s) left by the crash")
        stack = self._open(())
        locks = self.lock_files()
        if locks or not self.penv.backend_url.startswith("file://"):
            # Only a backend that records the update can cancel it; a file backend's
            # lock is just the file, so cancel only when there is one.
            try:
                stack.cancel()
            except auto.CommandError as exc:
                log.debug("cancel: %s", exc)
        removed = 0
        for lock in self.lock_files():
            lock.unlink(missing_ok=True)
            removed += 1
        if locks:
            done.append(f"released the stale lock of a crashed update ({len(locks)} lock file(s))")
        elif removed:
            done.append(f"removed {removed} stale lock file(s)")
        deployment = stack.export_stack()
        pending = (deployment.deployment or {}).get("pending_operations") or []
        if pending:
            # import drops pending operations (we also empty them to be explicit)
            deployment.deployment = {**(deployment.deployment or {}), "pending_operations": []}
            stack.import_stack(deployment)
            done.append(f"cleared {len(pending)} pending operation(s)")
        if self.config.mode == "cluster":
            self.refresh(progress=progress)
            done.append("refreshed from the cluster")
        return done

    def _repair_checkpoint_files(self) -> int:
        """A file backend killed mid-write leaves a temp file and possibly an empty
        `.attrs` sidecar, which makes every later load fail with "EOF". Both are
        safe to drop: the checkpoint itself is only ever replaced by a rename."""
        url = self.penv.backend_url
        if not url.startswith("file://"):
            return 0
        stacks = Path(url.removeprefix("file://")) / ".pulumi" / "stacks" / PROJECT
        count = 0
        for path in stacks.glob(f"{self.stack_name}.json*"):
            broken_sidecar = path.name.endswith(".attrs") and path.stat().st_size == 0
            if path.name.endswith(".tmp") or broken_sidecar:
                path.unlink(missing_ok=True)
                count += 1
        return count

    def lock_files(self) -> list[Path]:
        """File backends keep locks under .pulumi/locks/<org>/<project>/<stack>/."""
        url = self.penv.backend_url
        if not url.startswith("file://"):
            return []
        root = Path(url.removeprefix("file://")) / ".pulumi" / "locks"
        return sorted(root.glob(f"**/{PROJECT}/{self.stack_name}/*.json"))
