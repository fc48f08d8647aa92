"""The domain service: every read and write of `portal_domains` goes through here.

Callers (CLI, REST API, Temporal activities) get frozen `DomainView`s, never ORM
objects. Each mutation runs in one transaction together with its audit row;
refused attempts (invalid hostname, hostname claimed, stale status write) are
audited too. After a commit, `on_committed` receives a `DomainChange`; the
reconciler plugs in a hook that starts or signals the tenant's Temporal
workflow.

Idempotence and retries
-----------------------
- `request` with the hostname the tenant already has (and not disabled) changes
  nothing and returns the row as it is. `disable` of a disabled domain likewise.
- Those repeats still call `on_committed`: the hook is at-least-once. If a
  process dies between commit and hook, or the hook fails (HookFailed), repeating
  the call is how the workflow gets started. Hooks must be idempotent (the
  workflow id is derived from the tenant id).
- `record_status(expected=A, new=B)` is a conditional UPDATE (WHERE status = A
  [AND version = V]). If it matches nothing because the row is already in B,
  the write is taken as a retry of one that committed (say, a Temporal activity
  whose result was lost) and succeeds without writing again; with
  `expected_version` this is only so if the row's version is exactly V + 1.
  In any other status it raises StaleStatus. A transition not in the status
  graph raises core.status.IllegalTransition before the database is touched.
- `record_status(expected=A, new=A)` is not a transition: when the row is in A
  it refreshes `status_message`, `last_checked_at` and (if given)
  `verification_details` without bumping `version` or calling the hook, so a
  poller may repeat it freely; an audit row is written only when the message
  or details changed (check times and TTLs aside). When the row is not in A it
  raises StaleStatus.
- `details` are merged into `verification_details` key by key (core.records:
  one part per check), so a check that fails replaces its own part only. The
  first write after a request or replacement also stamps `requested_at`.
- `version` counts changes of status or hostname (what the reconciler acts on).

Hostname lifecycle
------------------
The canonical prefix, host and certificate secret are assigned on a tenant's
first request and never change. Replacing the hostname (or re-requesting a
disabled one) is modelled as "disable, then request": both edges exist from
every status, so a replacement is always a legal path through the graph and
restarts at pending_dns.

Claims and holders
------------------
A request only *claims* a hostname; the row *holds* it once its DNS is verified
(db.models.HOLDING_STATUSES: pending_certificate .. active). Several tenants may
claim one hostname (pending_dns, verifying_dns, dns_failed, disabled), so a
tenant that can never verify a hostname cannot block its owner; at most one
holds it (a partial unique index). `request` of a hostname another tenant holds
raises DomainAlreadyClaimed, whose message never names the holder. A
`record_status` into a holding status while another tenant holds the hostname
(both verified, a race) raises DomainAlreadyClaimed too, leaves the row as it
was and audits the refusal. A disabled row releases its hostname.
`expire_unverified_claims` disables claims left unverified for too long;
`purge` deletes a disabled row for good (its audit rows stay).
"""

from __future__ import annotations

import builtins
import copy
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal
from uuid import UUID, uuid4

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from core.canonical import canonical_host, certificate_secret_name, choose_prefix
from core.config import ACME_CHALLENGE_LABEL
from core.hostnames import HostnameError, normalize_base_domain, normalize_hostname
from core.records import REQUESTED_AT, DomainRecord, merge_details, without_check_times
from core.status import DEPLOYABLE, DomainStatus, check_transition
from core.text import safe_text, safe_value
from db import repository as repo
from db.errors import (
    ConcurrentUpdate,
    DomainAlreadyClaimed,
    DomainDisabled,
    DomainError,
    DomainNotDisabled,
    DomainNotFound,
    HookFailed,
    RemovalInProgress,
    StaleStatus,
)
from db.importer import LegacyRow
from db.models import AUDIT_OUTCOMES, PortalDomain, PortalDomainAudit, VerificationMethod

__all__ = [
    "AuditEntry",
    "ConcurrentUpdate",
    "DomainAction",
    "DomainAlreadyClaimed",
    "DomainChange",
    "DomainDisabled",
    "DomainError",
    "DomainNotDisabled",
    "RemovalInProgress",
    "DomainNotFound",
    "DomainService",
    "DomainView",
    "HookFailed",
    "HostnameError",
    "StaleStatus",
]

logger = logging.getLogger(__name__)

MAX_ACTOR_LENGTH = 200
# A refused hostname is audited as typed, cut to this length.
MAX_AUDITED_INPUT = 300
# Lost races are retried this often before ConcurrentUpdate; each retry sees
# the winner's committed row, so one retry normally settles it.
_MAX_ATTEMPTS = 3
_FAILED = frozenset({DomainStatus.DNS_FAILED, DomainStatus.CERTIFICATE_FAILED})
# Claims whose DNS is not verified (yet): what expire_unverified_claims disables.
UNVERIFIED = frozenset(
    {DomainStatus.PENDING_DNS, DomainStatus.VERIFYING_DNS, DomainStatus.DNS_FAILED}
)


class DomainAction(StrEnum):
    REQUEST = "request"
    REPLACE = "replace"
    REFRESH = "refresh"
    DISABLE = "disable"
    RECORD_STATUS = "record_status"
    # Audit only: the after-commit hook of an expiry is told DISABLE, and a
    # purge runs no hook (there is no row left to reconcile).
    EXPIRE = "expire"
    PURGE = "purge"
    # A row adopted from the TypeScript implementation (`portal-domains import`).
    IMPORT = "import"


@dataclass(frozen=True, kw_only=True)
class ImportOutcome:
    """What `import_legacy` did (or, in a dry run, would do) with one row."""

    result: Literal["imported", "unchanged", "conflict"]
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class DomainChange:
    """What the after-commit hook is told: enough to start or signal a workflow."""

    tenant_id: UUID
    action: DomainAction
    domain: str
    status: DomainStatus


@dataclass(frozen=True, kw_only=True)
class DomainView:
    id: UUID
    tenant_id: UUID
    domain: str
    canonical_prefix: str
    canonical_host: str
    certificate_secret_name: str
    status: DomainStatus
    status_message: str
    last_checked_at: datetime | None
    verification_method: VerificationMethod
    verification_details: Mapping[str, Any]
    last_synced_resource_version: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    # When the current hostname was requested (None for rows from before it was kept).
    requested_at: datetime | None = None

    def to_record(self) -> DomainRecord:
        return DomainRecord(
            tenant_id=str(self.tenant_id),
            prefix=self.canonical_prefix,
            domain=self.domain,
            canonical_host=self.canonical_host,
            certificate_secret_name=self.certificate_secret_name,
            status=self.status,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "tenant_id": str(self.tenant_id),
            "domain": self.domain,
            "canonical_prefix": self.canonical_prefix,
            "canonical_host": self.canonical_host,
            "certificate_secret_name": self.certificate_secret_name,
            "status": self.status.value,
            "status_message": self.status_message,
            "last_checked_at": _iso(self.last_checked_at),
            "verification_method": self.verification_method.value,
            "verification_details": copy.deepcopy(dict(self.verification_details)),
            "last_synced_resource_version": self.last_synced_resource_version,
            "version": self.version,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "requested_at": _iso(self.requested_at),
        }


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    id: int
    occurred_at: datetime
    actor: str
    tenant_id: UUID
    action: str
    domain: str | None
    status_before: DomainStatus | None
    status_after: DomainStatus | None
    outcome: str
    detail: Mapping[str, Any] | None


@dataclass(frozen=True)
class PendingSignal:
    """One tenant's queued workflow signals, collapsed into the one to deliver."""

    tenant_id: UUID
    signal: Literal["refresh", "remove"]
    up_to_id: int  # the newest row this delivery covers
    attempts: int
    queued_at: datetime


@dataclass(frozen=True)
class QueuedSignal:
    tenant_id: UUID
    signal: str
    queued_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# verification_details["removal"] of a disabled domain: requested, then removed.
# The platform's own audit log: actions on no single tenant (401s, console actions,
# reconcile runs). No tenant has this id, so no tenant can read it.
PLATFORM_LOG = UUID(int=0)

REMOVAL = "removal"
REMOVAL_REQUESTED = "requested"
REMOVAL_DONE = "removed"
REMOVAL_HELD = "held"
# A removal still to be carried out (the worker resumes these at startup).
REMOVAL_PENDING = frozenset({REMOVAL_REQUESTED, REMOVAL_HELD})


def removal_requested_message(domain: str, actor: str) -> str:
    return (
        f"Removal requested by {actor}: the certificate, gateway and routes of {domain} are "
        "being removed."
    )


def pending_dns_message(domain: str, canonical: str, challenge_target: str | None = None) -> str:
    if challenge_target is None:
        return (
            f"Waiting for DNS: create a CNAME record {domain} -> {canonical}, then wait for it "
            "to propagate; verification starts automatically."
        )
    return (
        f"Waiting for DNS: create two CNAME records, {domain} -> {canonical} and "
        f"{ACME_CHALLENGE_LABEL}.{domain} -> {challenge_target}, then wait for them to "
        "propagate; verification starts automatically."
    )


class DomainService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        base_domain: str,
        on_committed: Callable[[DomainChange], None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        challenge_zone: str | None = None,
        outbox: bool = False,
    ) -> None:
        """`challenge_zone`: the environment's DNS-01 delegation zone (acmeDns01Zone) when
        it issues by delegation, so the first status message names both records.

        `outbox`: each change the reconciler must hear about (request, replace,
        refresh, disable, expiry, import) also writes a workflow signal to
        portal_domain_outbox in the same transaction; reconciler.outbox delivers it.
        """
        self._sessions = session_factory
        self._outbox = outbox
        self._base_domain = normalize_base_domain(base_domain)
        self._challenge_zone = challenge_zone
        self._on_committed = on_committed
        self._clock = clock

    # ------------------------------------------------------------------ writes

    def request(self, tenant_id: UUID, domain: str, actor: str) -> DomainView:
        """Register `domain` for the tenant, replace its previous one, or repeat (no-op)."""
        _check_actor(actor)
        try:
            host = normalize_hostname(domain, base_domain=self._base_domain)
        except HostnameError as exc:
            self._audit_alone(
                tenant_id=tenant_id,
                action=DomainAction.REQUEST,
                actor=actor,
                domain=domain[:MAX_AUDITED_INPUT],
                outcome="rejected",
                detail={"code": exc.code, "message": exc.message},
            )
            raise
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                with self._sessions.begin() as session:
                    view, change = self._request(session, tenant_id, host, actor)
            except DomainAlreadyClaimed:
                self._audit_claimed(tenant_id, host, actor)
                raise
            except (IntegrityError, StaleDataError) as exc:
                # Lost a race: a unique constraint fired (hostname, tenant or
                # prefix) or the row changed under us. The transaction is rolled
                # back; decide from what the winner committed.
                holder = self._holder_of(host)
                if holder is not None and holder != tenant_id:
                    self._audit_claimed(tenant_id, host, actor)
                    raise DomainAlreadyClaimed(host) from exc
                logger.info(
                    "request of %s for tenant %s lost a race (attempt %d): %s",
                    host,
                    tenant_id,
                    attempt,
                    exc.__class__.__name__,
                )
                continue
            self._notify(change)
            return view
        raise ConcurrentUpdate(
            f"request of {host} for tenant {tenant_id} kept racing with other writers; retry"
        )

    def refresh(self, tenant_id: UUID, actor: str) -> DomainView:
        """Ask for a re-check.

        A failed domain (dns_failed, certificate_failed) goes back to pending_dns so
        the workflow starts over; any other keeps its status and only the hook runs
        (it signals the workflow to re-check now). A disabled domain is refused.
        """
        _check_actor(actor)
        with self._sessions.begin() as session:
            row = self._lock_row(session, tenant_id)
            if row is None:
                self._audit(session, tenant_id, DomainAction.REFRESH, actor, outcome="not_found")
                view = None
            else:
                before = row.status
                if before is DomainStatus.DISABLED:
                    self._audit_row(session, row, DomainAction.REFRESH, actor, before, "rejected")
                else:
                    if before in _FAILED:
                        check_transition(before, DomainStatus.PENDING_DNS)
                        row.status = DomainStatus.PENDING_DNS
                        row.status_message = self._pending_dns(row.domain, row)
                        row.updated_at = self._clock()
                        session.flush()
                    self._audit_row(session, row, DomainAction.REFRESH, actor, before, "ok")
                    self._enqueue(session, tenant_id, DomainAction.REFRESH)
                view = _view(row)
        if view is None:
            raise DomainNotFound(tenant_id)
        if view.status is DomainStatus.DISABLED:
            raise DomainDisabled(tenant_id, view.domain)
        self._notify(_change(view, DomainAction.REFRESH))
        return view

    def disable(self, tenant_id: UUID, actor: str) -> DomainView:
        """Disable the tenant's domain (its resources are pruned); idempotent."""
        _check_actor(actor)
        with self._sessions.begin() as session:
            row = self._lock_row(session, tenant_id)
            if row is None:
                self._audit(session, tenant_id, DomainAction.DISABLE, actor, outcome="not_found")
                found = False
            else:
                found = True
                before = row.status
                self._enqueue(session, tenant_id, DomainAction.DISABLE)
                if before is DomainStatus.DISABLED:
                    self._audit_row(session, row, DomainAction.DISABLE, actor, before, "noop")
                else:
                    check_transition(before, DomainStatus.DISABLED)
                    row.status = DomainStatus.DISABLED
                    row.status_message = removal_requested_message(row.domain, actor)
                    # "requested" until a reconcile shows the objects gone (record_removals).
                    row.verification_details = {
                        **(row.verification_details or {}),
                        REMOVAL: REMOVAL_REQUESTED,
                    }
                    row.updated_at = self._clock()
                    session.flush()
                    self._audit_row(session, row, DomainAction.DISABLE, actor, before, "ok")
                view = _view(row)
        if not found:
            raise DomainNotFound(tenant_id)
        self._notify(_change(view, DomainAction.DISABLE))
        return view

    def record_status(
        self,
        tenant_id: UUID,
        *,
        expected_status: DomainStatus,
        new_status: DomainStatus,
        message: str,
        details: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        actor: str = "reconciler",
    ) -> DomainView:
        """Move the domain from `expected_status` to `new_status` if it is still there.

        See the module docstring for retries and same-status writes.
        """
        _check_actor(actor)
        transition = expected_status != new_status
        if transition:
            check_transition(expected_status, new_status)
        error: DomainError | None = None
        change: DomainChange | None = None
        with self._sessions.begin() as session:
            row = self._lock_row(session, tenant_id)
            if row is None:
                self._audit(
                    session, tenant_id, DomainAction.RECORD_STATUS, actor, outcome="not_found"
                )
                raise_not_found = True
            else:
                raise_not_found = False
                before = row.status
                old = (row.status_message, without_check_times(row.verification_details))
                merged = _merged_details(row, details)
                held_elsewhere = False
                try:
                    # A savepoint, so a refused write leaves the transaction
                    # usable for the audit row (PostgreSQL aborts it otherwise).
                    with session.begin_nested():
                        updated = self._conditional_update(
                            session,
                            tenant_id,
                            expected_status=expected_status,
                            new_status=new_status,
                            message=message,
                            details=merged,
                            expected_version=expected_version,
                        )
                except IntegrityError:
                    # Only the held-hostname index can fire here: another
                    # tenant verified the same hostname and holds it.
                    holder = repo.holder_of(session, row.domain)
                    if holder is None or holder == tenant_id:
                        raise
                    updated, held_elsewhere = False, True
                if held_elsewhere:
                    session.refresh(row)
                    logger.warning(
                        "tenant %s: %s -> %s refused, %s is held by tenant %s",
                        tenant_id,
                        expected_status,
                        new_status,
                        row.domain,
                        holder,
                    )
                    error = DomainAlreadyClaimed(row.domain)
                    self._audit_row(
                        session,
                        row,
                        DomainAction.RECORD_STATUS,
                        actor,
                        row.status,
                        "conflict",
                        detail={
                            "code": DomainAlreadyClaimed.code,
                            "expected_status": expected_status.value,
                            "wanted_status": new_status.value,
                        },
                    )
                elif updated:
                    session.refresh(row)
                    new = (row.status_message, without_check_times(row.verification_details))
                    if transition or new != old:
                        self._audit_row(
                            session,
                            row,
                            DomainAction.RECORD_STATUS,
                            actor,
                            before,
                            "ok",
                            detail={"message": message},
                        )
                    if transition:
                        change = _change(_view(row), DomainAction.RECORD_STATUS)
                elif transition and _already_applied(row, new_status, expected_version):
                    logger.info(
                        "tenant %s is already %s: treating record_status as a retry",
                        tenant_id,
                        new_status,
                    )
                    change = _change(_view(row), DomainAction.RECORD_STATUS)
                else:
                    error = StaleStatus(
                        tenant_id=tenant_id,
                        expected_status=expected_status,
                        actual_status=row.status,
                        expected_version=expected_version,
                        actual_version=row.version,
                    )
                    self._audit_row(
                        session,
                        row,
                        DomainAction.RECORD_STATUS,
                        actor,
                        row.status,
                        "conflict",
                        detail={
                            "expected_status": expected_status.value,
                            "wanted_status": new_status.value,
                            "expected_version": expected_version,
                            "actual_version": row.version,
                        },
                    )
                view = _view(row)
        if raise_not_found:
            raise DomainNotFound(tenant_id)
        if error is not None:
            raise error
        if change is not None:
            self._notify(change)
        return view

    def purge(self, tenant_id: UUID, actor: str) -> DomainView:
        """Delete the tenant's disabled row for good; returns it as it was.

        Refused (DomainNotDisabled) unless the domain is disabled: disable it
        first, so its resources are pruned. The audit rows stay, the purge and
        any refusal included. No hook runs: there is nothing left to reconcile.
        A later request starts afresh (its canonical prefix is chosen again).
        """
        _check_actor(actor)
        error: DomainError | None = None
        view: DomainView | None = None
        with self._sessions.begin() as session:
            row = self._lock_row(session, tenant_id)
            if row is None:
                self._audit(session, tenant_id, DomainAction.PURGE, actor, outcome="not_found")
                error = DomainNotFound(tenant_id)
            elif row.status is not DomainStatus.DISABLED:
                self._audit_row(session, row, DomainAction.PURGE, actor, row.status, "rejected")
                error = DomainNotDisabled(tenant_id, row.domain, row.status)
            elif (row.verification_details or {}).get(REMOVAL) in REMOVAL_PENDING:
                # Purging now would orphan its objects and the workflow removing them.
                self._audit_row(session, row, DomainAction.PURGE, actor, row.status, "rejected")
                error = RemovalInProgress(tenant_id, row.domain)
            else:
                view = _view(row)
                self._audit(
                    session,
                    tenant_id,
                    DomainAction.PURGE,
                    actor,
                    outcome="ok",
                    domain=row.domain,
                    before=row.status,
                    detail={
                        "canonical_prefix": row.canonical_prefix,
                        "canonical_host": row.canonical_host,
                    },
                )
                repo.delete_row(session, row)
        if error is not None:
            raise error
        assert view is not None
        return view

    def expire_unverified_claims(
        self, older_than: timedelta, actor: str = "reconciler"
    ) -> builtins.list[UUID]:
        """Disable claims still unverified whose row has not changed for `older_than`.

        Rows in pending_dns, verifying_dns or dns_failed whose `updated_at` is
        before now (the service's clock) minus `older_than` are disabled, each
        audited as `expire`; returns their tenant ids, sorted. The after-commit
        hook is told DISABLE for each (so the workflow stops); a failing hook is
        logged, not raised, since repeating the call would not repeat it.

        Note that every status write bumps `updated_at`, the reconciler's
        periodic re-checks included: a claim whose workflow keeps retrying is
        only expired if `older_than` is shorter than that retry interval.
        """
        _check_actor(actor)
        if older_than <= timedelta(0):
            raise ValueError(f"older_than must be positive, got {older_than}")
        now = self._clock()
        cutoff = now - older_than
        expired: builtins.list[DomainView] = []
        with self._sessions.begin() as session:
            for row in repo.lock_rows_not_updated_since(session, UNVERIFIED, cutoff):
                before, last_update = row.status, row.updated_at
                check_transition(before, DomainStatus.DISABLED)
                row.status = DomainStatus.DISABLED
                row.status_message = (
                    f"Expired: {row.domain} was not verified within {_duration(older_than)}. "
                    "Request it again to start over."
                )
                row.updated_at = now
                session.flush()
                self._audit_row(
                    session,
                    row,
                    DomainAction.EXPIRE,
                    actor,
                    before,
                    "ok",
                    detail={
                        "older_than_seconds": older_than.total_seconds(),
                        "last_updated_at": last_update.isoformat(),
                    },
                )
                self._enqueue(session, row.tenant_id, DomainAction.EXPIRE)
                expired.append(_view(row))
        for view in expired:
            try:
                self._notify(_change(view, DomainAction.DISABLE))
            except HookFailed:
                pass  # logged by _notify; the workflow sees the row disabled on its next write
        return sorted(view.tenant_id for view in expired)

    def audit_denied(
        self,
        tenant_id: UUID,
        action: str,
        actor: str,
        *,
        domain: str | None = None,
        reason: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an attempt refused before reaching the service (e.g. by RBAC).

        `action` is a DomainAction or what was refused before any (`read`,
        `audit`, `authenticate`); `detail` adds to the reason (who asked: the
        caller's tenant, role and issuer; how many identical refusals the row stands for).
        """
        _check_actor(actor)
        if not action or len(action) > 32:
            raise ValueError(f"action must be 1-32 characters, got {action!r}")
        with self._sessions.begin() as session:
            self._audit(
                session,
                tenant_id,
                action,
                actor,
                outcome="denied",
                domain=domain,
                detail={**(detail or {}), "reason": reason},
            )

    def audit_operator_action(
        self,
        tenant_id: UUID,
        action: str,
        actor: str,
        *,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an operator action that is not a change of one domain's row (e.g. the
        console's stack recover or deletion confirmation), in its own transaction, with
        the same escaping and minimal-row fallback as every other audit row."""
        _check_actor(actor)
        if not action or len(action) > 32:
            raise ValueError(f"action must be 1-32 characters, got {action!r}")
        if outcome not in AUDIT_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(AUDIT_OUTCOMES)}")
        self._audit_alone(
            tenant_id=tenant_id,
            action=action,
            actor=actor,
            domain=None,
            outcome=outcome,
            detail=detail,
        )

    def record_removals(
        self, present: Collection[str], *, environment: str, commit: str | None
    ) -> builtins.list[UUID]:
        """After a reconcile: disabled domains whose objects are gone are `removed`.

        `present`: the tenant slugs the stack still holds (held deletions included);
        `commit`: the nm-kube-config commit that dropped their files, if any. Each
        is a same-status write (audited); the tenant sees "removed", not "requested".
        """
        done = []
        for view in self.list(DomainStatus.DISABLED):
            details = dict(view.verification_details or {})
            # Only removals in progress: an expired claim or a row disabled before
            # removals were tracked never had objects to remove (or says so already).
            if view.canonical_prefix in present or details.get(REMOVAL) not in REMOVAL_PENDING:
                continue
            where = f" (nm-kube-config {commit[:12]})" if commit else ""
            try:
                self.record_status(
                    view.tenant_id,
                    expected_status=DomainStatus.DISABLED,
                    new_status=DomainStatus.DISABLED,
                    message=(
                        f"Removed: {view.domain} is no longer served; its certificate, gateway "
                        f"and routes left the {environment} stack and nm-kube-config{where}."
                    ),
                    details={**details, REMOVAL: REMOVAL_DONE, "removed_commit": commit or ""},
                    actor="reconciler",
                )
            except StaleStatus:
                continue  # re-requested meanwhile: not removed after all
            done.append(view.tenant_id)
        return done

    def import_legacy(
        self, legacy: LegacyRow, actor: str, *, dry_run: bool = False
    ) -> ImportOutcome:
        """Adopt one validated row of the old implementation, keeping hostname, status,
        canonical prefix and certificate secret name (db.importer). A tenant that has a
        row here already is never overwritten. `dry_run` writes nothing at all.
        """
        _check_actor(actor)
        session = self._sessions()
        try:
            outcome = self._import(session, legacy, actor)
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        if outcome.result == "imported" and not dry_run:
            # The worker's resume (or this hook) starts the tenant's workflow, which
            # carries on from the imported status.
            self._notify(_change(self.get(legacy.tenant_id), DomainAction.REQUEST))
        return outcome

    def _import(self, session: Session, legacy: LegacyRow, actor: str) -> ImportOutcome:
        existing = self._lock_row(session, legacy.tenant_id)
        if existing is not None:
            same = (existing.domain, existing.canonical_prefix, existing.certificate_secret_name)
            if same == (legacy.domain, legacy.canonical_prefix, legacy.certificate_secret_name):
                return ImportOutcome(result="unchanged")
            return ImportOutcome(
                result="conflict",
                reason=f"the tenant already has {existing.domain} ({existing.status}) here; "
                "left as it is",
            )
        now = self._clock()
        row = PortalDomain(
            id=uuid4(),
            tenant_id=legacy.tenant_id,
            domain=legacy.domain,
            canonical_prefix=legacy.canonical_prefix,
            canonical_host=legacy.canonical_host,
            status=legacy.status,
            status_message=legacy.status_message or f"Imported ({legacy.status}).",
            last_checked_at=legacy.last_checked_at,
            verification_method=VerificationMethod.CNAME,
            verification_details={"expected_cname": legacy.canonical_host, "imported": True},
            certificate_secret_name=legacy.certificate_secret_name,
            last_synced_resource_version=None,
            created_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            reason = (
                "its hostname, canonical host or certificate secret name is already used by "
                "another tenant here"
            )
            self._audit(
                session,
                legacy.tenant_id,
                DomainAction.IMPORT,
                actor,
                outcome="conflict",
                domain=legacy.domain,
                detail={"source_row": legacy.row, "reason": reason},
            )
            return ImportOutcome(result="conflict", reason=reason)
        self._audit(
            session,
            legacy.tenant_id,
            DomainAction.IMPORT,
            actor,
            outcome="ok",
            domain=legacy.domain,
            after=legacy.status,
            detail={
                "source_row": legacy.row,
                "certificate_secret_name": legacy.certificate_secret_name,
                "canonical_host": legacy.canonical_host,
            },
        )
        self._enqueue(session, legacy.tenant_id, DomainAction.IMPORT)
        return ImportOutcome(result="imported")

    def record_synced_versions(self, versions: Mapping[str, str]) -> int:
        """After a cluster-mode apply: what the API server stored, per canonical prefix.

        Bookkeeping of the reconciler, not a change of the domain: not audited
        and no status transition.
        """
        with self._sessions.begin() as session:
            return repo.set_synced_versions(session, versions)

    # ------------------------------------------------------------------ outbox

    def due_signals(self, *, limit: int = 100) -> builtins.list[PendingSignal]:
        """Workflow signals to deliver now, one per tenant (its rows collapsed: the last
        signal wins, since the workflow reads the row itself and only needs waking)."""
        with self._sessions() as session:
            rows = repo.due_signals(session, self._clock(), limit)
        pending: dict[UUID, PendingSignal] = {}
        for row in rows:  # ordered by id
            first = pending.get(row.tenant_id)
            pending[row.tenant_id] = PendingSignal(
                tenant_id=row.tenant_id,
                signal="remove" if row.signal == "remove" else "refresh",
                up_to_id=row.id,
                attempts=max(row.attempts, first.attempts if first else 0),
                queued_at=first.queued_at if first else row.created_at,
            )
        return builtins.list(pending.values())

    def signal_delivered(self, pending: PendingSignal) -> None:
        """Forget the tenant's rows up to the delivered one (later ones stay queued)."""
        with self._sessions.begin() as session:
            repo.delete_signals(session, pending.tenant_id, pending.up_to_id)

    def signal_failed(self, pending: PendingSignal, error: str, retry_in: timedelta) -> None:
        with self._sessions.begin() as session:
            repo.defer_signals(
                session,
                pending.tenant_id,
                pending.up_to_id,
                retry_at=self._clock() + retry_in,
                error=safe_text(error)[:500],
            )

    def queued_signals(self) -> builtins.list[QueuedSignal]:
        """Everything in the outbox (for operators and tests)."""
        with self._sessions() as session:
            return [
                QueuedSignal(
                    tenant_id=row.tenant_id,
                    signal=row.signal,
                    queued_at=row.created_at,
                    attempts=row.attempts,
                    next_attempt_at=row.next_attempt_at,
                    last_error=row.last_error,
                )
                for row in repo.outbox_rows(session)
            ]

    def _enqueue(self, session: Session, tenant_id: UUID, action: DomainAction) -> None:
        if self._outbox:
            removal = action in (DomainAction.DISABLE, DomainAction.EXPIRE)
            repo.add_signal(session, tenant_id, "remove" if removal else "refresh", self._clock())

    # ------------------------------------------------------------------- reads

    def get(self, tenant_id: UUID) -> DomainView:
        with self._sessions() as session:
            row = repo.row_of(session, tenant_id)
            if row is None:
                raise DomainNotFound(tenant_id)
            return _view(row)

    def list(self, status: DomainStatus | None = None) -> builtins.list[DomainView]:
        with self._sessions() as session:
            views = [
                _view(row) for row in repo.rows_in(session, None if status is None else [status])
            ]
        return sorted(views, key=lambda v: str(v.tenant_id))

    def load_records(
        self, statuses: Collection[DomainStatus] = DEPLOYABLE
    ) -> builtins.list[DomainRecord]:
        """The reconciler's input: one record per tenant in `statuses`, sorted by tenant."""
        wanted = sorted(set(statuses))
        if not wanted:
            return []
        with self._sessions() as session:
            records = [_view(row).to_record() for row in repo.rows_in(session, wanted)]
        return sorted(records, key=lambda r: r.tenant_id)

    def audit_log(self, tenant_id: UUID) -> builtins.list[AuditEntry]:
        """The tenant's audit rows, oldest first."""
        with self._sessions() as session:
            return [_audit_entry(row) for row in repo.audit_rows(session, tenant_id)]

    # ----------------------------------------------------------------- helpers

    def _request(
        self, session: Session, tenant_id: UUID, host: str, actor: str
    ) -> tuple[DomainView, DomainChange]:
        row = self._lock_row(session, tenant_id)
        holder = repo.holder_of(session, host)
        if holder is not None and holder != tenant_id:
            raise DomainAlreadyClaimed(host)
        now = self._clock()

        if row is None:
            row = self._new_row(session, tenant_id, host, now)
            self._audit_row(
                session,
                row,
                DomainAction.REQUEST,
                actor,
                None,
                "ok",
                detail={"canonical_host": row.canonical_host},
            )
            self._enqueue(session, tenant_id, DomainAction.REQUEST)
            view = _view(row)
            return view, _change(view, DomainAction.REQUEST)

        before = row.status
        if row.domain == host and before is not DomainStatus.DISABLED:
            self._audit_row(session, row, DomainAction.REQUEST, actor, before, "noop")
            # At least once: a repeat is how a lost signal gets delivered.
            self._enqueue(session, tenant_id, DomainAction.REQUEST)
            view = _view(row)
            return view, _change(view, DomainAction.REQUEST)

        # Replacement (or re-enabling) = disable, then request anew.
        if before is not DomainStatus.DISABLED:
            check_transition(before, DomainStatus.DISABLED)
        check_transition(DomainStatus.DISABLED, DomainStatus.PENDING_DNS)
        previous = row.domain
        action = DomainAction.REQUEST if previous == host else DomainAction.REPLACE
        row.domain = host
        row.status = DomainStatus.PENDING_DNS
        row.status_message = self._pending_dns(host, row)
        row.last_checked_at = None
        row.verification_details = {"expected_cname": row.canonical_host}
        row.last_synced_resource_version = None
        row.updated_at = now
        session.flush()
        self._audit_row(
            session, row, action, actor, before, "ok", detail={"previous_domain": previous}
        )
        self._enqueue(session, tenant_id, action)
        view = _view(row)
        return view, _change(view, action)

    def _pending_dns(self, host: str, row: PortalDomain) -> str:
        target = f"{row.canonical_prefix}.{self._challenge_zone}" if self._challenge_zone else None
        return pending_dns_message(host, row.canonical_host, target)

    def _new_row(self, session: Session, tenant_id: UUID, host: str, now: datetime) -> PortalDomain:
        # Only prefixes sharing the tenant's first 7 hex digits can collide.
        taken = repo.prefixes_starting_with(session, tenant_id.hex[:7])
        prefix = choose_prefix(tenant_id, taken)
        if len(prefix) > 7:
            logger.warning(
                "tenant %s: prefix %s collides, lengthened to %s", tenant_id, prefix[:7], prefix
            )
        canonical = canonical_host(prefix, self._base_domain)
        row = PortalDomain(
            id=uuid4(),
            tenant_id=tenant_id,
            domain=host,
            canonical_prefix=prefix,
            canonical_host=canonical,
            status=DomainStatus.PENDING_DNS,
            status_message=pending_dns_message(
                host,
                canonical,
                f"{prefix}.{self._challenge_zone}" if self._challenge_zone else None,
            ),
            last_checked_at=None,
            verification_method=VerificationMethod.CNAME,
            verification_details={"expected_cname": canonical},
            certificate_secret_name=certificate_secret_name(prefix),
            last_synced_resource_version=None,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row

    def _conditional_update(
        self,
        session: Session,
        tenant_id: UUID,
        *,
        expected_status: DomainStatus,
        new_status: DomainStatus,
        message: str,
        details: Mapping[str, Any] | None,
        expected_version: int | None,
    ) -> bool:
        return repo.conditional_update(
            session,
            tenant_id,
            expected_status=expected_status,
            new_status=new_status,
            message=message,
            details=details,
            expected_version=expected_version,
            now=self._clock(),
        )

    @staticmethod
    def _lock_row(session: Session, tenant_id: UUID) -> PortalDomain | None:
        return repo.lock_row(session, tenant_id)

    def _holder_of(self, host: str) -> UUID | None:
        with self._sessions() as session:
            return repo.holder_of(session, host)

    def _audit(
        self,
        session: Session,
        tenant_id: UUID,
        action: DomainAction | str,
        actor: str,
        *,
        outcome: str,
        domain: str | None = None,
        before: DomainStatus | None = None,
        after: DomainStatus | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        session.add(
            PortalDomainAudit(
                occurred_at=self._clock(),
                actor=safe_text(actor),
                tenant_id=tenant_id,
                action=str(action),
                domain=safe_text(domain) if domain is not None else None,
                status_before=before.value if before is not None else None,
                status_after=after.value if after is not None else None,
                outcome=outcome,
                # Audited input is stored escaped: a NUL or a lone surrogate in a
                # refused request must not make the audit row unwritable.
                detail=safe_value(dict(detail)) if detail is not None else None,
            )
        )

    def _audit_row(
        self,
        session: Session,
        row: PortalDomain,
        action: DomainAction,
        actor: str,
        before: DomainStatus | None,
        outcome: str,
        *,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self._audit(
            session,
            row.tenant_id,
            action,
            actor,
            outcome=outcome,
            domain=row.domain,
            before=before,
            after=row.status,
            detail=detail,
        )

    def _audit_alone(
        self,
        *,
        tenant_id: UUID,
        action: DomainAction | str,
        actor: str,
        domain: str | None,
        outcome: str,
        detail: Mapping[str, Any] | None,
    ) -> None:
        """An audit row in a transaction of its own (the attempt itself wrote nothing).

        If the database refuses the row (input escaping missed something, a value
        too long for a column), a minimal row is written instead, in a fresh
        transaction: who, which tenant, what, the outcome, and the error's class.
        If even that fails (the database is down), its error propagates.
        """
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._sessions.begin() as session:
                self._audit(
                    session, tenant_id, action, actor, outcome=outcome, domain=domain, detail=detail
                )
        except SQLAlchemyError as exc:
            logger.exception(
                "audit row (%s, %s) for tenant %s was refused; writing a minimal one",
                action,
                outcome,
                tenant_id,
            )
            self._audit_minimal(
                tenant_id=tenant_id, action=action, actor=actor, outcome=outcome, error=exc
            )

    def _audit_minimal(
        self,
        *,
        tenant_id: UUID,
        action: DomainAction | str,
        actor: str,
        outcome: str,
        error: Exception,
    ) -> None:
        """The fallback of `_audit_alone`: only fields that cannot carry the bad input."""
        with self._sessions.begin() as session:
            session.add(
                PortalDomainAudit(
                    occurred_at=self._clock(),
                    actor=safe_text(actor)[:MAX_ACTOR_LENGTH],
                    tenant_id=tenant_id,
                    action=str(action),
                    domain=None,
                    outcome=outcome,
                    detail={"audit_error": type(error).__name__},
                )
            )

    def _audit_claimed(self, tenant_id: UUID, host: str, actor: str) -> None:
        self._audit_alone(
            tenant_id=tenant_id,
            action=DomainAction.REQUEST,
            actor=actor,
            domain=host,
            outcome="conflict",
            detail={"code": DomainAlreadyClaimed.code},
        )

    def _notify(self, change: DomainChange) -> None:
        if self._on_committed is None:
            return
        try:
            self._on_committed(change)
        except Exception as exc:
            # The change is committed; say so, keep the cause, and let the
            # caller retry (every operation is idempotent and re-runs the hook).
            logger.exception("after-commit hook failed for %s", change)
            raise HookFailed(
                f"the {change.action} of {change.domain} for tenant {change.tenant_id} is saved, "
                f"but starting the reconciler failed ({exc}); repeat the command to retry"
            ) from exc


def _check_actor(actor: str) -> None:
    if not actor.strip() or len(actor) > MAX_ACTOR_LENGTH:
        raise ValueError(f"actor must be 1-{MAX_ACTOR_LENGTH} characters, got {actor!r}")


def _duration(value: timedelta) -> str:
    """`7 days`, `36 hours`, `90 minutes`, `45 seconds`: the largest whole unit."""
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def _already_applied(row: PortalDomain, new_status: DomainStatus, version: int | None) -> bool:
    return row.status is new_status and (version is None or row.version == version + 1)


def _change(view: DomainView, action: DomainAction) -> DomainChange:
    return DomainChange(
        tenant_id=view.tenant_id, action=action, domain=view.domain, status=view.status
    )


def _view(row: PortalDomain) -> DomainView:
    return DomainView(
        id=row.id,
        tenant_id=row.tenant_id,
        domain=row.domain,
        canonical_prefix=row.canonical_prefix,
        canonical_host=row.canonical_host,
        certificate_secret_name=row.certificate_secret_name,
        status=DomainStatus(row.status),
        status_message=row.status_message,
        last_checked_at=row.last_checked_at,
        verification_method=VerificationMethod(row.verification_method),
        verification_details=MappingProxyType(copy.deepcopy(dict(row.verification_details))),
        last_synced_resource_version=row.last_synced_resource_version,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        requested_at=_requested_at(row),
    )


def _unstamped_request(row: PortalDomain) -> datetime | None:
    """The request time of a row not checked since its (new) hostname was requested.

    `request` writes a new or replaced hostname with `updated_at` = now, no
    `last_checked_at` and fresh details; the first record_status stamps it.
    """
    if (
        REQUESTED_AT in (row.verification_details or {})
        or row.status != DomainStatus.PENDING_DNS
        or row.last_checked_at is not None
    ):
        return None
    return row.updated_at


def _requested_at(row: PortalDomain) -> datetime | None:
    stamped = (row.verification_details or {}).get(REQUESTED_AT)
    if isinstance(stamped, str):
        try:
            return datetime.fromisoformat(stamped)
        except ValueError:
            return None
    return _unstamped_request(row)


def _merged_details(row: PortalDomain, details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What record_status writes to verification_details (None: leave them)."""
    requested = _unstamped_request(row)
    if details is None and requested is None:
        return None
    update = dict(details or {})
    if requested is not None:
        update = {REQUESTED_AT: requested.isoformat(), **update}
    return merge_details(row.verification_details or {}, update)


def _audit_entry(row: PortalDomainAudit) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        occurred_at=row.occurred_at,
        actor=row.actor,
        tenant_id=row.tenant_id,
        action=row.action,
        domain=row.domain,
        status_before=DomainStatus(row.status_before) if row.status_before else None,
        status_after=DomainStatus(row.status_after) if row.status_after else None,
        outcome=row.outcome,
        detail=MappingProxyType(copy.deepcopy(row.detail)) if row.detail is not None else None,
    )
