"""Workflow and activity payloads: frozen, keyword-only dataclasses, no I/O.

Workflows import only this module and core/, never the activity
implementations (which pull in Pulumi and SQLAlchemy), so activity names are
constants here and the Temporal sandbox stays lean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.violations import PolicyViolation

# Activity names (implementations in reconciler/activities.py).
LOAD_DOMAIN = "load_domain"
RECORD_STATUS = "record_status"
VERIFY_CNAME = "verify_cname"
CHECK_CAA = "check_caa"
REQUEST_RECONCILE = "request_reconcile"
RECONCILE_ENVIRONMENT = "reconcile_environment"
# A sharded environment (core.shards) runs as one activity per shard, on any
# worker, then one publish of every shard's files.
ENVIRONMENT_SHARDS = "environment_shards"
RECONCILE_SHARD = "reconcile_shard"
PUBLISH_ENVIRONMENT = "publish_environment"
CHECK_CERTIFICATE = "check_certificate"
PROBE_HTTPS = "probe_https"
EMIT_EVENT = "emit_event"

REGISTRATION_WORKFLOW_PREFIX = "portal-domain-"
RECONCILE_WORKFLOW_PREFIX = "portal-domains-reconcile-"


def registration_workflow_id(tenant_id: str) -> str:
    return f"{REGISTRATION_WORKFLOW_PREFIX}{tenant_id}"


def reconcile_workflow_id(environment: str) -> str:
    return f"{RECONCILE_WORKFLOW_PREFIX}{environment}"


@dataclass(frozen=True, kw_only=True)
class Timings:
    """Every wait in the workflows, in seconds, so tests and demos run fast."""

    dns_check_delays: tuple[float, ...] = (10, 20, 30, 60, 120, 300)
    dns_timeout: float = 3600
    dns_required_matches: int = 2
    cert_poll_interval: float = 30
    cert_timeout: float = 3600
    # How long cert-manager may report a failure (core.certificates: failing) before
    # the domain is certificate_failed; it is not going to fix itself.
    cert_failure_grace: float = 300
    https_poll_interval: float = 15
    https_timeout: float = 900
    reconcile_wait_timeout: float = 1800
    failed_retry_interval: float = 3600
    watch_interval: float = 3600
    watch_checks_before_continue_as_new: int = 100


@dataclass(frozen=True, kw_only=True)
class RegistrationInput:
    tenant_id: str
    environment: str
    timings: Timings = field(default_factory=Timings)
    # carried over continue-as-new
    active_since: str | None = None
    requested_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class DomainSnapshot:
    tenant_id: str
    domain: str
    canonical_host: str
    prefix: str
    status: str
    status_message: str | None
    version: int
    # DNS-01 delegation: `_acme-challenge.<domain>` must be a CNAME to
    # challenge_target ("" with HTTP-01, and in histories from before it).
    challenge_host: str = ""
    challenge_target: str = ""
    # When the current hostname was requested, ISO 8601 ("" unknown, and in older histories).
    requested_at: str = ""


@dataclass(frozen=True, kw_only=True)
class LoadDomainInput:
    tenant_id: str
    # Whose stack config says whether the domain also needs the challenge CNAME.
    environment: str = ""


@dataclass(frozen=True, kw_only=True)
class LoadDomainResult:
    domain: DomainSnapshot | None


@dataclass(frozen=True, kw_only=True)
class RecordStatusInput:
    tenant_id: str
    expected_status: str
    new_status: str
    message: str
    # Merged into verification_details key by key (core.records): a part is replaced whole.
    details: dict[str, Any] | None = None
    domain: str | None = None  # the domain the workflow is working on


@dataclass(frozen=True, kw_only=True)
class RecordStatusResult:
    status: str
    version: int
    changed: bool


@dataclass(frozen=True, kw_only=True)
class VerifyCnameInput:
    tenant_id: str
    domain: str
    expected: str


@dataclass(frozen=True, kw_only=True)
class VerifyCnameResult:
    matches: bool
    observed: str | None
    error: str | None
    # The CNAME's TTL in seconds (None without one, and in older histories).
    ttl: int | None = None


@dataclass(frozen=True, kw_only=True)
class CheckCaaInput:
    tenant_id: str
    domain: str


@dataclass(frozen=True, kw_only=True)
class CheckCaaResult:
    allowed: bool
    message: str


@dataclass(frozen=True, kw_only=True)
class ReconcileRequest:
    request_id: str
    requester_workflow_id: str | None = None
    reason: str = ""
    # An operator's `reconcile --yes` / `--allow-empty`: the run they land in applies
    # the deletions a guard would otherwise hold.
    confirm_deletions: bool = False
    allow_empty: bool = False


@dataclass(frozen=True, kw_only=True)
class RequestReconcileInput:
    environment: str
    request: ReconcileRequest


@dataclass(frozen=True, kw_only=True)
class ReconcileEnvironmentInput:
    environment: str
    run_id: str
    request_ids: tuple[str, ...] = ()
    confirm_deletions: bool = False
    allow_empty: bool = False


@dataclass(frozen=True, kw_only=True)
class ReconcileShardInput:
    environment: str
    shard: int
    run_id: str
    confirm_deletions: bool = False
    allow_empty: bool = False


@dataclass(frozen=True, kw_only=True)
class ShardOutcome:
    """What one shard's run did (or why it failed), for the environment's publish."""

    shard: int
    stack: str
    ok: bool
    message: str = ""
    skipped: str | None = None
    created: int = 0
    updated: int = 0
    replaced: int = 0
    deleted: int = 0
    desired_tenants: tuple[str, ...] = ()
    held_tenants: tuple[str, ...] = ()
    held_reason: str | None = None
    recovered: tuple[str, ...] = ()
    policy_violations: tuple[PolicyViolation, ...] = ()
    worker: str = ""  # the identity of the worker that ran it


@dataclass(frozen=True, kw_only=True)
class PublishEnvironmentInput:
    environment: str
    run_id: str
    shards: tuple[ShardOutcome, ...]


@dataclass(frozen=True, kw_only=True)
class ReconcileOutcome:
    ok: bool
    message: str
    run_number: int = 0
    created: int = 0
    updated: int = 0
    replaced: int = 0
    deleted: int = 0
    commit: str | None = None
    changed_slugs: tuple[str, ...] = ()
    deployed_tenants: tuple[str, ...] = ()
    duration_seconds: float = 0.0
    # Why a run was refused by the policy pack, rule by rule.
    policy_violations: tuple[PolicyViolation, ...] = ()
    # Deletions a guard refused: left in the stack until an operator confirms.
    held_tenants: tuple[str, ...] = ()
    held_reason: str | None = None
    # nm-kube-config files portal-domains did not write and what the publish did
    # with each (adopted, removed as a duplicate, left alone).
    adoption: tuple[str, ...] = ()
    # Why the engine did not run (the desired state equals the last run's).
    skipped: str | None = None
    # Sharded environments: each shard's part of the run.
    shards: tuple[ShardOutcome, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ReconcileFinished:
    request_id: str
    outcome: ReconcileOutcome


@dataclass(frozen=True, kw_only=True)
class EnvironmentState:
    """Carried across continue-as-new of the environment workflow."""

    environment: str
    debounce_seconds: float = 2.0
    idle_timeout_seconds: float = 600.0
    runs_before_continue_as_new: int = 50
    heartbeat_timeout_seconds: float = 60.0
    pending: tuple[ReconcileRequest, ...] = ()
    run_number: int = 0


@dataclass(frozen=True, kw_only=True)
class CertificateCheckInput:
    tenant_id: str
    domain: str
    # Which environment's cluster to ask in cluster mode ("" in histories before it).
    environment: str = ""


@dataclass(frozen=True, kw_only=True)
class CertificateCheckResult:
    ok: bool
    message: str
    not_after: str | None = None
    # cert-manager reports an error that needs a fix (cluster mode; False before it).
    failing: bool = False


@dataclass(frozen=True, kw_only=True)
class HttpsProbeInput:
    tenant_id: str
    domain: str
    # Cluster mode checks the applied routing first ("" in histories before it).
    environment: str = ""


@dataclass(frozen=True, kw_only=True)
class HttpsProbeResult:
    ok: bool
    status: int | None
    message: str


@dataclass(frozen=True, kw_only=True)
class EmitEventInput:
    event: str
    tenant_id: str
    properties: dict[str, str | int | float | bool | None] = field(default_factory=dict)
