"""Stand-in activities for fast workflow tests, registered under the real activity names.

The real workflows run on the Temporal dev server; these activities replace
the database, DNS, TLS, HTTPS and Pulumi with a scripted, in-memory tenant so
every path of the registration workflow can be driven in seconds. The row
obeys the same rules as the real one: writes are conditional on the expected
status and must follow the status graph (core.status), or they fail the way
the real activity does (a non-retryable `stale_status` / `illegal_transition`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker

from core.status import DomainStatus, check_transition
from reconciler import payloads as p
from reconciler.workflows import EnvironmentReconcileWorkflow, PortalDomainRegistrationWorkflow

CnameScript = Callable[[int], p.VerifyCnameResult]


def matching(host: str) -> p.VerifyCnameResult:
    return p.VerifyCnameResult(matches=True, observed=host, error=None)


def pointing_at(host: str) -> p.VerifyCnameResult:
    return p.VerifyCnameResult(matches=False, observed=host, error=None)


@dataclass
class Tenant:
    """One tenant's row, and what the outside world answers for its domain."""

    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    domain: str = "portal.acme.com"
    prefix: str = "abc1234"
    status: DomainStatus = DomainStatus.PENDING_DNS
    message: str = ""
    version: int = 1
    cname: CnameScript | None = None  # call number -> answer; default: always matches
    cname_delay_seconds: float = 0.0
    caa: p.CheckCaaResult = field(
        default_factory=lambda: p.CheckCaaResult(allowed=True, message="CAA allows it")
    )
    certificate_ok: bool = True
    # cert-manager reports an error that needs a fix (cluster mode's `failing`).
    certificate_failing: bool = False
    # DNS-01 delegation: the snapshot names the _acme-challenge CNAME, answered by
    # `challenge_cname` (default: matches).
    delegated: bool = False
    challenge_cname: CnameScript | None = None
    https_ok: bool = True
    reconcile_error: str | None = None  # the reconcile fails permanently with this
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    event_properties: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # When the current hostname was requested ("" = unknown, as before it was recorded).
    requested_at: str = ""
    reconcile_reasons: list[str] = field(default_factory=list)
    cname_calls: int = 0

    @property
    def canonical_host(self) -> str:
        return f"{self.prefix}.portal.algapsa.com"

    @property
    def challenge_host(self) -> str:
        return f"_acme-challenge.{self.domain}" if self.delegated else ""

    @property
    def challenge_target(self) -> str:
        return f"{self.prefix}.acme.portal.algapsa.com" if self.delegated else ""

    def snapshot(self) -> p.DomainSnapshot:
        return p.DomainSnapshot(
            tenant_id=self.tenant_id,
            domain=self.domain,
            canonical_host=self.canonical_host,
            prefix=self.prefix,
            status=self.status.value,
            status_message=self.message,
            version=self.version,
            challenge_host=self.challenge_host,
            challenge_target=self.challenge_target,
            requested_at=self.requested_at,
        )


class StandInActivities:
    def __init__(self, client: Client, task_queue: str, tenant: Tenant) -> None:
        self.client = client
        self.task_queue = task_queue
        self.tenant = tenant

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.load_domain,
            self.record_status,
            self.verify_cname,
            self.check_caa,
            self.request_reconcile,
            self.environment_shards,
            self.reconcile_environment,
            self.check_certificate,
            self.probe_https,
            self.emit_event,
        ]

    @activity.defn(name=p.LOAD_DOMAIN)
    async def load_domain(self, inp: p.LoadDomainInput) -> p.LoadDomainResult:
        return p.LoadDomainResult(domain=self.tenant.snapshot())

    @activity.defn(name=p.RECORD_STATUS)
    async def record_status(self, inp: p.RecordStatusInput) -> p.RecordStatusResult:
        t = self.tenant
        expected, new = DomainStatus(inp.expected_status), DomainStatus(inp.new_status)
        if t.status is not expected:
            raise ApplicationError(
                f"expected {expected}, row is {t.status}", type="stale_status", non_retryable=True
            )
        if new is not expected:
            check_transition(expected, new)
        changed = new is not t.status or inp.message != t.message
        t.status, t.message = new, inp.message
        if inp.details is not None:
            # merged per part, like DomainService.record_status
            t.details = {**t.details, **inp.details}
        if changed:
            t.version += 1
            t.transitions.append((expected.value, new.value, inp.message))
        return p.RecordStatusResult(status=new.value, version=t.version, changed=changed)

    @activity.defn(name=p.VERIFY_CNAME)
    async def verify_cname(self, inp: p.VerifyCnameInput) -> p.VerifyCnameResult:
        t = self.tenant
        if t.delegated and inp.domain == t.challenge_host:
            if t.challenge_cname is None:
                return matching(inp.expected)
            return t.challenge_cname(t.cname_calls)
        call = t.cname_calls
        t.cname_calls += 1
        if t.cname_delay_seconds:
            await asyncio.sleep(t.cname_delay_seconds)
        return t.cname(call) if t.cname else matching(inp.expected)

    @activity.defn(name=p.CHECK_CAA)
    async def check_caa(self, inp: p.CheckCaaInput) -> p.CheckCaaResult:
        return self.tenant.caa

    @activity.defn(name=p.REQUEST_RECONCILE)
    async def request_reconcile(self, inp: p.RequestReconcileInput) -> None:
        self.tenant.reconcile_reasons.append(inp.request.reason)
        await self.client.start_workflow(
            EnvironmentReconcileWorkflow.run,
            p.EnvironmentState(
                environment=inp.environment, debounce_seconds=0.1, idle_timeout_seconds=2
            ),
            id=p.reconcile_workflow_id(inp.environment),
            task_queue=self.task_queue,
            start_signal="request",
            start_signal_args=[inp.request],
        )

    @activity.defn(name=p.ENVIRONMENT_SHARDS)
    async def environment_shards(self, environment: str) -> int:
        return 1

    @activity.defn(name=p.RECONCILE_ENVIRONMENT)
    async def reconcile_environment(self, inp: p.ReconcileEnvironmentInput) -> p.ReconcileOutcome:
        t = self.tenant
        if t.reconcile_error:
            raise ApplicationError(t.reconcile_error, type="refused", non_retryable=True)
        deployed = () if t.status is DomainStatus.DISABLED else (t.prefix,)
        return p.ReconcileOutcome(ok=True, message="stand-in run", deployed_tenants=deployed)

    @activity.defn(name=p.CHECK_CERTIFICATE)
    async def check_certificate(self, inp: p.CertificateCheckInput) -> p.CertificateCheckResult:
        if self.tenant.certificate_ok:
            return p.CertificateCheckResult(ok=True, message="valid", not_after="2027-03-01")
        if self.tenant.certificate_failing:
            return p.CertificateCheckResult(
                ok=False,
                message="cert-manager: Challenge pending: DNS update failed: REFUSED",
                failing=True,
            )
        return p.CertificateCheckResult(ok=False, message="self-signed certificate")

    @activity.defn(name=p.PROBE_HTTPS)
    async def probe_https(self, inp: p.HttpsProbeInput) -> p.HttpsProbeResult:
        if self.tenant.https_ok:
            return p.HttpsProbeResult(ok=True, status=200, message="200 OK")
        return p.HttpsProbeResult(ok=False, status=None, message="connection refused")

    @activity.defn(name=p.EMIT_EVENT)
    async def emit_event(self, inp: p.EmitEventInput) -> None:
        self.tenant.events.append(inp.event)
        self.tenant.event_properties.append((inp.event, dict(inp.properties)))


@dataclass
class Rig:
    client: Client
    tenant: Tenant
    handle: WorkflowHandle[Any, Any]
    environment: str

    async def wait_for(
        self, predicate: Callable[[Tenant], bool], what: str, timeout: float = 30
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self.tenant):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; status {self.tenant.status}, "
                    f"transitions {self.tenant.transitions}"
                )
            await asyncio.sleep(0.05)

    async def wait_status(self, status: DomainStatus, timeout: float = 30) -> None:
        await self.wait_for(lambda t: t.status is status, f"status {status}", timeout)


@asynccontextmanager
async def registration_rig(
    client: Client, tenant: Tenant, timings: p.Timings
) -> AsyncIterator[Rig]:
    """Start the tenant's real registration workflow on a worker with stand-in activities."""
    task_queue = f"fast-{uuid.uuid4().hex[:10]}"
    environment = f"env-{uuid.uuid4().hex[:8]}"
    activities = StandInActivities(client, task_queue, tenant)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[PortalDomainRegistrationWorkflow, EnvironmentReconcileWorkflow],
        activities=activities.all(),
    ):
        handle = await client.start_workflow(
            PortalDomainRegistrationWorkflow.run,
            p.RegistrationInput(
                tenant_id=tenant.tenant_id, environment=environment, timings=timings
            ),
            id=p.registration_workflow_id(tenant.tenant_id),
            task_queue=task_queue,
        )
        rig = Rig(client=client, tenant=tenant, handle=handle, environment=environment)
        try:
            yield rig
        finally:
            try:
                await handle.terminate("test finished")
            except RPCError:
                pass  # it had finished already
