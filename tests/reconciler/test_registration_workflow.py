"""The registration workflow's every path, fast: real workflow, stand-in activities.

Runs on the Temporal dev server (there is no time-skipping server here) with
waits of a fraction of a second; tests/e2e covers the same workflow against
the real database, DNS, TLS, Pulumi and Git.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from core.status import DomainStatus as S
from reconciler import payloads as p
from tests.reconciler.standins import Rig, Tenant, matching, pointing_at, registration_rig
from tests.support.regen import may_rewrite

pytestmark = pytest.mark.temporal
HISTORIES = Path(__file__).parent / "histories"

FAST = p.Timings(
    dns_check_delays=(0.1,),
    dns_timeout=1.0,
    cert_poll_interval=0.1,
    cert_timeout=1.0,
    https_poll_interval=0.1,
    https_timeout=1.0,
    reconcile_wait_timeout=20,
    failed_retry_interval=60,  # long: a failure a test leaves must not be retried under it
    watch_interval=0.2,
    watch_checks_before_continue_as_new=1000,
)


def drive(
    temporal_address: str,
    tenant: Tenant,
    scenario: Callable[[Rig], Awaitable[None]],
    *,
    timings: p.Timings = FAST,
    record_as: str | None = None,
) -> None:
    async def main() -> None:
        client = await Client.connect(temporal_address)
        async with registration_rig(client, tenant, timings) as rig:
            await scenario(rig)
            if record_as and may_rewrite("RECORD_HISTORY"):
                history = await rig.handle.fetch_history()
                HISTORIES.mkdir(exist_ok=True)
                (HISTORIES / f"{record_as}.json").write_text(
                    json.dumps(
                        {
                            "workflow_id": history.workflow_id,
                            "history": json.loads(history.to_json()),
                        }
                    )
                )

    asyncio.run(main())


def statuses(tenant: Tenant) -> list[tuple[str, str]]:
    return [(old, new) for old, new, _ in tenant.transitions if old != new]


# ------------------------------------------------------------------ DNS


def test_dns_that_never_matches_fails_with_what_the_lookup_saw(temporal_address: str) -> None:
    tenant = Tenant(cname=lambda _call: pointing_at("old.hosting.example.net"))

    async def scenario(rig: Rig) -> None:
        await rig.wait_for(lambda t: "portal_domain.dns_failed" in t.events, "the event")

    drive(temporal_address, tenant, scenario, record_as="registration-dns-failed")
    assert statuses(tenant) == [("pending_dns", "verifying_dns"), ("verifying_dns", "dns_failed")]
    assert "it points to old.hosting.example.net" in tenant.message
    assert f"CNAME {tenant.canonical_host}." in tenant.message
    assert "portal_domain.dns_failed" in tenant.events
    assert tenant.reconcile_reasons == []


def test_a_first_match_arriving_at_the_deadline_is_confirmed_not_failed(
    temporal_address: str,
) -> None:
    # The first lookup takes longer than the whole DNS timeout and matches:
    # the tenant's record is right, so it must be confirmed, not failed.
    tenant = Tenant(cname_delay_seconds=1.5)

    async def scenario(rig: Rig) -> None:
        await rig.wait_status(S.ACTIVE)

    drive(temporal_address, tenant, scenario)
    assert ("verifying_dns", "dns_failed") not in statuses(tenant)
    assert tenant.cname_calls >= 2  # confirmed by a second matching lookup


def test_a_caa_record_that_forbids_the_ca_fails_dns_without_deploying(
    temporal_address: str,
) -> None:
    tenant = Tenant(
        caa=p.CheckCaaResult(allowed=False, message="CAA on acme.com allows only digicert.com")
    )

    async def scenario(rig: Rig) -> None:
        await rig.wait_status(S.DNS_FAILED)

    drive(temporal_address, tenant, scenario, record_as="registration-caa-refused")
    assert tenant.message == "CAA on acme.com allows only digicert.com"
    assert tenant.reconcile_reasons == []  # nothing was deployed


def test_refresh_during_the_wait_after_a_dns_failure_rechecks_at_once(
    temporal_address: str,
) -> None:
    answers = {"host": "old.hosting.example.net"}
    tenant = Tenant(cname=lambda _call: pointing_at(answers["host"]))

    async def scenario(rig: Rig) -> None:
        await rig.wait_status(S.DNS_FAILED)
        answers["host"] = ""  # the tenant fixes the record...
        rig.tenant.cname = lambda _call: matching(rig.tenant.canonical_host)
        await rig.handle.signal("refresh")  # ...and presses Refresh
        # failed_retry_interval is 60 s: only the signal can bring it here this soon
        await rig.wait_status(S.ACTIVE, timeout=20)

    drive(temporal_address, tenant, scenario)
    assert ("dns_failed", "verifying_dns") in statuses(tenant)


# ------------------------------------------------------------------ certificate and HTTPS


def test_a_certificate_that_never_arrives_fails_with_guidance(temporal_address: str) -> None:
    tenant = Tenant(certificate_ok=False)

    async def scenario(rig: Rig) -> None:
        await rig.wait_for(lambda t: "portal_domain.cert_failed" in t.events, "the event")

    drive(temporal_address, tenant, scenario, record_as="registration-certificate-failed")
    assert statuses(tenant)[-1] == ("certificate_issuing", "certificate_failed")
    assert "self-signed certificate" in tenant.message
    assert "portal_domain.cert_failed" in tenant.events
    # certificate_failed carries the reason, apart from the tenant-facing message
    assert tenant.details["certificate"]["ok"] is False
    assert tenant.details["certificate"]["reason"] == "self-signed certificate"


def test_a_failure_cert_manager_reports_fails_the_certificate_after_the_grace_not_the_timeout(
    temporal_address: str,
) -> None:
    tenant = Tenant(certificate_ok=False, certificate_failing=True)
    # The whole-certificate timeout is far away: only the failure grace can end the wait.
    timings = dataclasses.replace(FAST, cert_timeout=600, cert_failure_grace=0.5)

    async def scenario(rig: Rig) -> None:
        await rig.wait_for(lambda t: "portal_domain.cert_failed" in t.events, "the event", 20)

    drive(temporal_address, tenant, scenario, timings=timings)
    assert statuses(tenant)[-1] == ("certificate_issuing", "certificate_failed")
    assert "DNS update failed: REFUSED" in tenant.message
    assert tenant.details["certificate"]["reason"] == (
        "cert-manager: Challenge pending: DNS update failed: REFUSED"
    )


def test_a_progressing_certificate_is_not_failed_before_the_timeout(
    temporal_address: str,
) -> None:
    tenant = Tenant(certificate_ok=False)  # not ready, but cert-manager reports no error
    timings = dataclasses.replace(FAST, cert_timeout=3, cert_failure_grace=0.2)

    async def scenario(rig: Rig) -> None:
        await rig.wait_status(S.CERTIFICATE_ISSUING)
        await asyncio.sleep(1.5)  # well past the grace, before the timeout
        assert tenant.status is S.CERTIFICATE_ISSUING
        await rig.wait_for(lambda t: "portal_domain.cert_failed" in t.events, "the event", 20)

    drive(temporal_address, tenant, scenario, timings=timings)


# ------------------------------------------------------------------ DNS-01 delegation


def test_with_delegation_both_cnames_are_verified_before_deploying(temporal_address: str) -> None:
    tenant = Tenant(delegated=True)

    async def scenario(rig: Rig) -> None:
        await rig.wait_status(S.ACTIVE)

    drive(temporal_address, tenant, scenario)
    verified = next(m for old, new, m in tenant.transitions if new == "pending_certificate")
    assert f"_acme-challenge.portal.acme.com to {tenant.challenge_target}" in verified


def test_a_missing_challenge_cname_fails_dns_naming_that_record(temporal_address: str) -> None:
    tenant = Tenant(
        delegated=True,
        challenge_cname=lambda _call: p.VerifyCnameResult(
            matches=False, observed=None, error="the name does not exist (NXDOMAIN)"
        ),
    )

    async def scenario(rig: Rig) -> None:
        await rig.wait_for(lambda t: "portal_domain.dns_failed" in t.events, "the event")

    drive(temporal_address, tenant, scenario)
    assert statuses(tenant)[-1] == ("verifying_dns", "dns_failed")
    assert tenant.reconcile_reasons == []
    assert (
        f"Create the record `_acme-challenge.portal.acme.com. CNAME {tenant.challenge_target}.`"
        in tenant.message
    )
    assert "NXDOMAIN" in tenant.message


def test_a_failed_delegated_certificate_points_at_the_challenge_record(
    temporal_address: str,
) -> None:
    tenant = Tenant(delegated=True, certificate_ok=False, certificate_failing=True)
    timings = dataclasses.replace(FAST, cert_failure_grace=0.2)

    async def scenario(rig: Rig) -> None:
        await rig.wait_for(lambda t: "portal_domain.cert_failed" in t.events, "the event", 20)

    drive(temporal_address, tenant, scenario, timings=timings)
    assert "Check that _acme-challenge.portal.acme.com is a CNAME to" in tenant.message
    assert "/.well-known/acme-challenge/" not in tenant.message


def test_a_reconcile_that_fails_permanently_keeps_the_domain_waiting_with_a_reference(
    temporal_address: str,
) -> None:
    tenant = Tenant(reconcile_error="policy certificate-in-gateway-namespace: mandatory")

    async def scenario(rig: Rig) -> None:
        await rig.wait_for(lambda t: "retried automatically" in t.message, "the retry message")

    drive(temporal_address, tenant, scenario, record_as="registration-reconcile-failed")
    assert tenant.status is S.PENDING_CERTIFICATE
    # The tenant sees a reference, never the internal reason; operators see the reason.
    assert "policy" not in tenant.message
    assert f"(reference {tenant.details['reference']})" in tenant.message
    assert "policy certificate-in-gateway-namespace: mandatory" in tenant.details["deploy_error"]
    assert "portal_domain.deploy_failed" in tenant.events


def test_https_that_never_answers_sends_the_failure_event_and_keeps_retrying(
    temporal_address: str,
) -> None:
    tenant = Tenant(https_ok=False)

    async def scenario(rig: Rig) -> None:
        await rig.wait_for(lambda t: "does not answer yet" in t.message, "the retry message")

    drive(temporal_address, tenant, scenario)
    assert tenant.status is S.DEPLOYING
    assert "portal_domain.https_failed" in tenant.events


# ------------------------------------------------------------------ remove and refresh


@pytest.mark.parametrize(
    ("tenant", "stage"),
    [
        (Tenant(cname=lambda _call: pointing_at("old.example.net")), "verifying_dns"),
        (Tenant(certificate_ok=False), "waiting_certificate"),
        (Tenant(https_ok=False), "probing_https"),
        (Tenant(), "watching"),
    ],
    ids=["dns", "certificate", "https", "active"],
)
def test_remove_during_each_wait_disables_and_prunes(
    temporal_address: str, tenant: Tenant, stage: str
) -> None:
    timings = dataclasses.replace(
        FAST, dns_timeout=60, cert_timeout=60, https_timeout=60, watch_interval=60
    )

    async def scenario(rig: Rig) -> None:
        deadline = asyncio.get_running_loop().time() + 20
        while await rig.handle.query("stage") != stage:
            assert asyncio.get_running_loop().time() < deadline, "never reached " + stage
            await asyncio.sleep(0.05)
        await rig.handle.signal("remove")
        assert await rig.handle.result() == "disabled"

    drive(temporal_address, tenant, scenario, timings=timings)
    assert tenant.status is S.DISABLED
    assert tenant.reconcile_reasons[-1] == f"prune {tenant.prefix}"
    assert "portal_domain.disabled" in tenant.events


def test_refresh_while_waiting_for_the_certificate_checks_again_at_once(
    temporal_address: str,
) -> None:
    tenant = Tenant(certificate_ok=False)
    timings = dataclasses.replace(FAST, cert_poll_interval=60, cert_timeout=120)

    async def scenario(rig: Rig) -> None:
        await rig.wait_status(S.CERTIFICATE_ISSUING)
        await asyncio.sleep(0.3)
        rig.tenant.certificate_ok = True
        await rig.handle.signal("refresh")  # the poll interval is 60 s
        await rig.wait_status(S.ACTIVE, timeout=15)

    drive(temporal_address, tenant, scenario, timings=timings)


# ------------------------------------------------------------------ active


def test_a_cname_lost_while_active_warns_and_recovers(temporal_address: str) -> None:
    tenant = Tenant()

    async def scenario(rig: Rig) -> None:
        await rig.wait_status(S.ACTIVE)
        rig.tenant.cname = lambda _call: pointing_at("elsewhere.example.net")
        await rig.wait_for(lambda t: t.message.startswith("Warning:"), "the warning")
        assert "elsewhere.example.net" in rig.tenant.message
        rig.tenant.cname = lambda _call: matching(rig.tenant.canonical_host)
        await rig.wait_for(lambda t: "again" in t.message, "the all-clear")

    drive(temporal_address, tenant, scenario, record_as="registration-cname-lost")
    assert tenant.status is S.ACTIVE
    assert tenant.events.count("portal_domain.cname_lost") == 1


def test_an_active_domain_continues_as_new_and_keeps_watching(temporal_address: str) -> None:
    tenant = Tenant()
    timings = dataclasses.replace(FAST, watch_interval=0.1, watch_checks_before_continue_as_new=3)

    async def scenario(rig: Rig) -> None:
        await rig.wait_status(S.ACTIVE)
        first_run = rig.handle.result_run_id
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            latest = rig.client.get_workflow_handle(rig.handle.id)
            description = await latest.describe()
            if description.run_id != first_run:
                break
            assert asyncio.get_running_loop().time() < deadline, "no continue-as-new"
            await asyncio.sleep(0.1)
        assert description.status is WorkflowExecutionStatus.RUNNING
        calls = rig.tenant.cname_calls
        await rig.wait_for(lambda t: t.cname_calls > calls + 1, "watching after continue-as-new")

    drive(temporal_address, tenant, scenario, timings=timings)
    assert tenant.status is S.ACTIVE


def test_time_to_active_counts_from_the_request_of_the_current_hostname(
    temporal_address: str,
) -> None:
    tenant = Tenant()
    replacement: list[float] = []  # how long the replacement took to go active, seen from here

    async def scenario(rig: Rig) -> None:
        await rig.wait_for(lambda t: "portal_domain.activated" in t.events, "the activation")
        await asyncio.sleep(3)
        # The tenant replaces its hostname, as DomainService.request does: the row
        # starts over at pending_dns, and the request time is the replacement's.
        t = rig.tenant
        t.domain, t.status, t.version = "clients.acme.com", S.PENDING_DNS, t.version + 1
        replaced = time.monotonic()
        t.requested_at = datetime.now(UTC).isoformat()
        await rig.handle.signal("refresh")
        await rig.wait_for(
            lambda t: t.events.count("portal_domain.activated") == 2, "the second activation"
        )
        replacement.append(time.monotonic() - replaced)

    drive(temporal_address, tenant, scenario)
    first, second = (
        props["time_to_active_seconds"]
        for event, props in tenant.event_properties
        if event == "portal_domain.activated"
    )
    assert isinstance(first, int | float)
    assert isinstance(second, int | float)
    # From the replacement's request, not from the workflow's start (over 3 s before
    # it): counted from the start, it would exceed what we saw by those 3 s.
    assert 0 <= second <= replacement[0] + 1.0
