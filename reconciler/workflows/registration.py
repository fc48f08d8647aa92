"""PortalDomainRegistrationWorkflow: one tenant's domain from request to active, then watched.

Deterministic code only: time from workflow.now(), ids from workflow.uuid4(),
all I/O in activities (named in reconciler.payloads). The workflow is driven by
the row's status, so a restart, a retried activity, a replaced domain or a
continue-as-new always resumes from what the database says, and every wait is
interruptible by the `remove` and `refresh` signals.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.records import CERTIFICATE_CHECK
    from core.status import DomainStatus as S
    from reconciler import payloads as p
    from reconciler.workflows.common import DB_RETRY, PROBE_RETRY, QUICK, one_line, root_cause

R = TypeVar("R")
# Patch id: failure events (deploy_failed, https_failed) added after histories were recorded.
FAILURE_EVENTS = "failure-events"


@workflow.defn
class PortalDomainRegistrationWorkflow:
    """Takes one tenant's requested domain to `active`, then keeps watching it."""

    def __init__(self) -> None:
        self._remove = False
        self._refresh = False
        self._reconciled: dict[str, p.ReconcileOutcome] = {}
        self._stage = "starting"
        self._cname_lost = False
        self._environment = ""

    # ------------------------------------------------------------------ signals
    @workflow.signal
    def remove(self) -> None:
        self._remove = True

    @workflow.signal
    def refresh(self) -> None:
        self._refresh = True

    @workflow.signal
    def reconcile_finished(self, finished: p.ReconcileFinished) -> None:
        self._reconciled[finished.request_id] = finished.outcome

    @workflow.query
    def stage(self) -> str:
        return self._stage

    # ------------------------------------------------------------------ helpers
    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on remove or refresh."""
        try:
            await workflow.wait_condition(lambda: self._remove or self._refresh, timeout=seconds)
        except TimeoutError:
            pass

    async def _load(self, tenant_id: str) -> p.DomainSnapshot | None:
        result: p.LoadDomainResult = await workflow.execute_activity(
            p.LOAD_DOMAIN,
            p.LoadDomainInput(tenant_id=tenant_id, environment=self._environment),
            result_type=p.LoadDomainResult,
            start_to_close_timeout=QUICK,
            retry_policy=DB_RETRY,
        )
        return result.domain

    async def _record(
        self,
        snap: p.DomainSnapshot,
        expected: S,
        new: S,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Write a transition; False when the row moved on (re-read and resume)."""
        try:
            await workflow.execute_activity(
                p.RECORD_STATUS,
                p.RecordStatusInput(
                    tenant_id=snap.tenant_id,
                    expected_status=expected.value,
                    new_status=new.value,
                    message=message,
                    details=details,
                    domain=snap.domain,
                ),
                result_type=p.RecordStatusResult,
                start_to_close_timeout=QUICK,
                retry_policy=DB_RETRY,
            )
        except ActivityError as err:
            workflow.logger.info("status %s -> %s not written: %s", expected, new, root_cause(err))
            return False
        return True

    async def _emit(
        self, event: str, snap: p.DomainSnapshot, **props: str | int | float | None
    ) -> None:
        await workflow.execute_activity(
            p.EMIT_EVENT,
            p.EmitEventInput(
                event=event, tenant_id=snap.tenant_id, properties={"domain": snap.domain, **props}
            ),
            start_to_close_timeout=QUICK,
            retry_policy=PROBE_RETRY,
        )

    async def _probe_activity(self, name: str, arg: object, result_type: type[R]) -> R:
        """A short, read-only check (DNS, TLS, HTTPS): quick timeout, few retries."""
        result: R = await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=QUICK,
            retry_policy=PROBE_RETRY,
        )
        return result

    async def _verify_cname(self, snap: p.DomainSnapshot) -> p.VerifyCnameResult:
        return await self._probe_activity(
            p.VERIFY_CNAME,
            p.VerifyCnameInput(
                tenant_id=snap.tenant_id, domain=snap.domain, expected=snap.canonical_host
            ),
            p.VerifyCnameResult,
        )

    async def _verify_records(self, snap: p.DomainSnapshot) -> tuple[p.VerifyCnameResult, str]:
        """Check the tenant's CNAME records; the first one that does not match, and its name.

        With DNS-01 delegation there are two: the portal's and `_acme-challenge`'s.
        """
        result = await self._verify_cname(snap)
        if not result.matches or not snap.challenge_host:
            return result, snap.domain
        challenge = await self._probe_activity(
            p.VERIFY_CNAME,
            p.VerifyCnameInput(
                tenant_id=snap.tenant_id,
                domain=snap.challenge_host,
                expected=snap.challenge_target,
            ),
            p.VerifyCnameResult,
        )
        return challenge, snap.challenge_host

    def _now_seconds(self) -> float:
        return workflow.now().timestamp()

    # ------------------------------------------------------------------ run
    @workflow.run
    async def run(self, inp: p.RegistrationInput) -> str:
        t = inp.timings
        self._environment = inp.environment
        requested_at = inp.requested_at or workflow.info().start_time.isoformat()
        watch_checks = 0
        while True:
            if self._remove:
                return await self._disable(inp)
            snap = await self._load(inp.tenant_id)
            if snap is None:
                self._stage = "gone"
                return "gone"
            status = S(snap.status)
            refreshed, self._refresh = self._refresh, False
            if status in (S.PENDING_DNS, S.VERIFYING_DNS):
                self._cname_lost = False
                if status is S.PENDING_DNS and snap.version > 1:
                    # A replaced domain (or a retry after a failure): the old
                    # host's objects must leave the stack now, not whenever the
                    # next tenant happens to trigger a reconcile.
                    await self._request_reconcile(inp, f"prune old host of {snap.prefix}")
                await self._verify_dns(snap, status, t)
            elif status is S.PENDING_CERTIFICATE:
                await self._reconcile(inp, snap, t)
            elif status is S.CERTIFICATE_ISSUING:
                await self._wait_certificate(snap, t)
            elif status is S.DEPLOYING:
                await self._probe(snap, t, requested_at)
            elif status in (S.DNS_FAILED, S.CERTIFICATE_FAILED):
                self._stage = f"waiting after {status}"
                if not refreshed:
                    await self._pause(t.failed_retry_interval)
                if self._remove:
                    continue
                retry = S.VERIFYING_DNS if status is S.DNS_FAILED else S.CERTIFICATE_ISSUING
                await self._record(
                    snap,
                    status,
                    retry,
                    f"Re-checking {snap.domain} after {status.replace('_', ' ')}.",
                )
            elif status is S.ACTIVE:
                await self._watch(snap, t, refreshed)
                watch_checks += 1
                if watch_checks >= t.watch_checks_before_continue_as_new and not (
                    self._remove or self._refresh
                ):
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(
                        p.RegistrationInput(
                            tenant_id=inp.tenant_id,
                            environment=inp.environment,
                            timings=t,
                            requested_at=requested_at,
                        )
                    )
            elif status is S.DISABLED:
                # Disabled elsewhere (CLI/API): make sure the stack prunes it.
                return await self._disable(inp)

    # ------------------------------------------------------------------ stages
    async def _verify_dns(self, snap: p.DomainSnapshot, status: S, t: p.Timings) -> None:
        self._stage = "verifying_dns"
        if status is S.PENDING_DNS:
            if not await self._record(
                snap,
                S.PENDING_DNS,
                S.VERIFYING_DNS,
                f"Checking that {snap.domain} is a CNAME to {snap.canonical_host}.",
            ):
                return
        deadline = self._now_seconds() + t.dns_timeout
        matches, attempt = 0, 0
        last: p.VerifyCnameResult | None = None
        last_name, last_target = snap.domain, snap.canonical_host
        while True:
            result, name = await self._verify_records(snap)
            if result.matches:
                matches += 1
                if matches >= t.dns_required_matches:
                    break
            else:
                matches, last = 0, result
                last_name = name
                last_target = snap.canonical_host if name == snap.domain else snap.challenge_target
            # Past the deadline, a lookup that just matched is confirmed rather than
            # failed: it is the answer the tenant was waiting for.
            if self._now_seconds() >= deadline and matches == 0:
                seen = (
                    f"it points to {last.observed}"
                    if last and last.observed
                    else (last.error if last and last.error else "no CNAME was found")
                )
                message = (
                    f"{last_name} is not a CNAME to {last_target}: {seen}. "
                    f"Create the record `{last_name}. CNAME {last_target}.` at your "
                    "DNS provider, then choose Refresh."
                )
                # What each lookup saw is in its own part (written by the check
                # activity); these flat keys describe the record that failed.
                details = {
                    "expected_cname": snap.canonical_host,
                    "observed": (last.observed or "") if last else "",
                }
                if snap.challenge_host:
                    details |= {"record": last_name, "record_target": last_target}
                if await self._record(snap, S.VERIFYING_DNS, S.DNS_FAILED, message, details):
                    await self._emit(
                        "portal_domain.dns_failed", snap, observed=last.observed if last else None
                    )
                return
            delay = t.dns_check_delays[min(attempt, len(t.dns_check_delays) - 1)]
            attempt += 1
            await self._pause(delay)
            if self._remove:
                return
            if self._refresh:
                self._refresh = False
                attempt = 0
        caa = await self._probe_activity(
            p.CHECK_CAA,
            p.CheckCaaInput(tenant_id=snap.tenant_id, domain=snap.domain),
            p.CheckCaaResult,
        )
        if not caa.allowed:
            # The check activity recorded the refusal in the details' caa part.
            if await self._record(snap, S.VERIFYING_DNS, S.DNS_FAILED, caa.message):
                await self._emit("portal_domain.dns_failed", snap, reason="caa")
            return
        delegated = (
            f" and {snap.challenge_host} to {snap.challenge_target}" if snap.challenge_host else ""
        )
        if await self._record(
            snap,
            S.VERIFYING_DNS,
            S.PENDING_CERTIFICATE,
            f"DNS verified: {snap.domain} is a CNAME to {snap.canonical_host}{delegated}. "
            "Deploying the certificate, gateway and routes.",
            {"expected_cname": snap.canonical_host, "observed": snap.canonical_host},
        ):
            await self._emit("portal_domain.dns_verified", snap)

    async def _request_reconcile(self, inp: p.RegistrationInput, reason: str) -> str:
        request_id = f"{workflow.info().workflow_id}/{workflow.uuid4()}"
        await workflow.execute_activity(
            p.REQUEST_RECONCILE,
            p.RequestReconcileInput(
                environment=inp.environment,
                request=p.ReconcileRequest(
                    request_id=request_id,
                    requester_workflow_id=workflow.info().workflow_id,
                    reason=reason,
                ),
            ),
            start_to_close_timeout=QUICK,
            retry_policy=DB_RETRY,
        )
        return request_id

    async def _reconcile(
        self, inp: p.RegistrationInput, snap: p.DomainSnapshot, t: p.Timings
    ) -> None:
        self._stage = "reconciling"
        request_id = await self._request_reconcile(inp, f"deploy {snap.prefix}")
        try:
            await workflow.wait_condition(
                lambda: request_id in self._reconciled or self._remove or self._refresh,
                timeout=t.reconcile_wait_timeout,
            )
        except TimeoutError:
            await self._record(
                snap,
                S.PENDING_CERTIFICATE,
                S.PENDING_CERTIFICATE,
                f"Still waiting for the {inp.environment} reconcile to finish.",
            )
            return
        outcome = self._reconciled.pop(request_id, None)
        if outcome is None:
            return  # removed or refreshed: the main loop decides
        if not outcome.ok or snap.prefix not in outcome.deployed_tenants:
            why = (
                one_line(outcome.message)
                if not outcome.ok
                else "the run did not include this domain"
            )
            if workflow.patched(FAILURE_EVENTS):
                await self._emit("portal_domain.deploy_failed", snap, reason=why)
            # The reason (a policy violation, a Git or Pulumi error) is for operators:
            # the tenant sees a reference they can quote, the detail goes to the row's
            # details (CLI, audit) and the failure event.
            reference = request_id.rsplit("/", 1)[-1][:12]
            await self._record(
                snap,
                S.PENDING_CERTIFICATE,
                S.PENDING_CERTIFICATE,
                "Deploying the certificate and routes did not succeed yet; it is retried "
                f"automatically (reference {reference}).",
                {"deploy_error": why[:1000], "reference": reference},
            )
            await self._pause(t.failed_retry_interval)
            return
        commit = f" (nm-kube-config {outcome.commit[:12]})" if outcome.commit else ""
        await self._record(
            snap,
            S.PENDING_CERTIFICATE,
            S.CERTIFICATE_ISSUING,
            f"Certificate, gateway and routes deployed in {inp.environment}{commit}. "
            "Waiting for cert-manager to issue the certificate.",
        )

    async def _wait_certificate(self, snap: p.DomainSnapshot, t: p.Timings) -> None:
        self._stage = "waiting_certificate"
        started = self._now_seconds()
        failing_since: float | None = None
        while True:
            result = await self._probe_activity(
                p.CHECK_CERTIFICATE,
                p.CertificateCheckInput(
                    tenant_id=snap.tenant_id, domain=snap.domain, environment=self._environment
                ),
                p.CertificateCheckResult,
            )
            if result.ok:
                until = f" (valid until {result.not_after})" if result.not_after else ""
                if await self._record(
                    snap,
                    S.CERTIFICATE_ISSUING,
                    S.DEPLOYING,
                    f"Certificate issued for {snap.domain}{until}. Checking HTTPS.",
                    {
                        CERTIFICATE_CHECK: {
                            "ok": True,
                            "reason": None,
                            "not_after": result.not_after,
                            "checked_at": workflow.now().isoformat(),
                        }
                    },
                ):
                    await self._emit(
                        "portal_domain.cert_ready",
                        snap,
                        issuance_seconds=round(self._now_seconds() - started, 1),
                    )
                return
            if result.failing and failing_since is None:
                failing_since = self._now_seconds()
            elif not result.failing:
                failing_since = None
            # cert-manager reporting the same failure for a while will not fix itself:
            # say so now rather than after the whole certificate timeout.
            failed_for = self._now_seconds() - failing_since if failing_since is not None else 0
            if (
                failing_since is not None and failed_for >= t.cert_failure_grace
            ) or self._now_seconds() - started >= t.cert_timeout:
                if snap.challenge_host:
                    check = (
                        f"Check that {snap.challenge_host} is a CNAME to {snap.challenge_target}"
                    )
                else:
                    check = (
                        f"Check that http://{snap.domain}/.well-known/acme-challenge/ reaches "
                        "our ingress"
                    )
                message = (
                    f"No valid certificate for {snap.domain} yet: {result.message}. {check}, "
                    "that no CAA record forbids letsencrypt.org, and Let's Encrypt rate limits "
                    "(5 duplicate certificates per week). cert-manager keeps retrying with backoff."
                )
                # The reason on its own, apart from the advice in the message.
                reason = {
                    CERTIFICATE_CHECK: {
                        "ok": False,
                        "reason": result.message,
                        "checked_at": workflow.now().isoformat(),
                    }
                }
                if await self._record(
                    snap, S.CERTIFICATE_ISSUING, S.CERTIFICATE_FAILED, message, reason
                ):
                    await self._emit("portal_domain.cert_failed", snap, reason=result.message)
                return
            await self._pause(t.cert_poll_interval)
            if self._remove or self._refresh:
                return

    async def _probe(self, snap: p.DomainSnapshot, t: p.Timings, requested_at: str) -> None:
        self._stage = "probing_https"
        started = self._now_seconds()
        while True:
            result = await self._probe_activity(
                p.PROBE_HTTPS,
                p.HttpsProbeInput(
                    tenant_id=snap.tenant_id, domain=snap.domain, environment=self._environment
                ),
                p.HttpsProbeResult,
            )
            if result.ok:
                if await self._record(
                    snap,
                    S.DEPLOYING,
                    S.ACTIVE,
                    f"Active: https://{snap.domain}/ answers (HTTP {result.status}).",
                ):
                    # From the request of the current hostname; the workflow's own
                    # start (requested_at) only where the row does not say.
                    since = workflow.now().timestamp() - _parse_iso(
                        snap.requested_at or requested_at
                    )
                    await self._emit(
                        "portal_domain.activated", snap, time_to_active_seconds=round(since, 1)
                    )
                return
            if self._now_seconds() - started >= t.https_timeout:
                if workflow.patched(FAILURE_EVENTS):
                    await self._emit("portal_domain.https_failed", snap, reason=result.message)
                await self._record(
                    snap,
                    S.DEPLOYING,
                    S.DEPLOYING,
                    f"https://{snap.domain}/ does not answer yet: {result.message}. "
                    "Retrying automatically.",
                )
                await self._pause(t.failed_retry_interval)
                return
            await self._pause(t.https_poll_interval)
            if self._remove or self._refresh:
                return

    async def _watch(self, snap: p.DomainSnapshot, t: p.Timings, refreshed: bool) -> None:
        self._stage = "watching"
        if not refreshed:
            await self._pause(t.watch_interval)
            if self._remove:
                return
        result = await self._verify_cname(snap)
        if not result.matches and not self._cname_lost:
            self._cname_lost = True
            seen = result.observed or result.error or "no CNAME"
            await self._record(
                snap,
                S.ACTIVE,
                S.ACTIVE,
                f"Warning: {snap.domain} no longer points at {snap.canonical_host} ({seen}). "
                "Visitors may not reach the portal; restore the CNAME.",
                {"expected_cname": snap.canonical_host, "observed": result.observed or ""},
            )
            await self._emit("portal_domain.cname_lost", snap, observed=result.observed)
        elif result.matches and self._cname_lost:
            self._cname_lost = False
            await self._record(
                snap,
                S.ACTIVE,
                S.ACTIVE,
                f"Active: {snap.domain} points at {snap.canonical_host} again.",
                {"expected_cname": snap.canonical_host, "observed": result.observed or ""},
            )

    async def _disable(self, inp: p.RegistrationInput) -> str:
        self._stage = "disabling"
        snap = await self._load(inp.tenant_id)
        if snap is None:
            return "gone"
        if snap.status != S.DISABLED.value:
            if not await self._record(
                snap,
                S(snap.status),
                S.DISABLED,
                f"Removal of {snap.domain} requested: its certificate, gateway and routes are "
                "being removed.",
            ):
                return await self._disable(inp)
        await self._emit("portal_domain.disabled", snap)
        request_id = await self._request_reconcile(inp, f"prune {snap.prefix}")
        try:
            await workflow.wait_condition(
                lambda: request_id in self._reconciled, timeout=inp.timings.reconcile_wait_timeout
            )
        except TimeoutError:
            workflow.logger.warning("prune of %s not confirmed in time", snap.prefix)
        self._stage = "disabled"
        return "disabled"


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
