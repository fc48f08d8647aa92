"""The DNS-check activities record what each check saw: real SQLite database, real DNS server.

Every CNAME and CAA check (during verification and the periodic re-check of an
active domain) refreshes `last_checked_at` and writes its own part of
`verification_details`, so one failing check never erases another's result.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest
from opentelemetry import trace
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from adapters.telemetry import Analytics
from core.records import cname_lost
from core.status import DomainStatus
from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory
from loopback.dns_server import LocalDnsServer
from reconciler import payloads as p
from reconciler.activities import ActivityDependencies, DomainActivities, ProbeSettings

S = DomainStatus
TENANT = UUID("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f")
DOMAIN = "portal.acme.com"
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def dns_server() -> Iterator[LocalDnsServer]:
    with LocalDnsServer(timeout_seconds=1.0) as server:
        yield server


@pytest.fixture
def service(tmp_path: Path) -> Iterator[DomainService]:
    url = f"sqlite:///{tmp_path / 'portal-domains.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    ticks = (START + timedelta(minutes=n) for n in itertools.count())
    yield DomainService(
        make_session_factory(engine), base_domain="portal.algapsa.com", clock=lambda: next(ticks)
    )
    engine.dispose()


def _unused(_environment: str) -> Any:
    raise AssertionError("not used by the DNS checks")


@pytest.fixture
def activities(service: DomainService, dns_server: LocalDnsServer) -> DomainActivities:
    return DomainActivities(
        ActivityDependencies(
            domains=service,
            stack_for=_unused,
            git_for=_unused,
            dns=dns_server.settings,
            probe=ProbeSettings(),
            analytics=Analytics(None, "http://127.0.0.1:9"),
            tracer=trace.get_tracer("tests"),
            client=cast(Client, None),
            task_queue="unused",
        )
    )


def _walk(service: DomainService, *path: DomainStatus) -> None:
    current = service.get(TENANT).status
    for target in path:
        service.record_status(TENANT, expected_status=current, new_status=target, message=target)
        current = target


def _verify(activities: DomainActivities, domain: str, expected: str) -> p.VerifyCnameResult:
    result: p.VerifyCnameResult = ActivityEnvironment().run(
        activities.verify_cname,
        p.VerifyCnameInput(tenant_id=str(TENANT), domain=domain, expected=expected),
    )
    return result


def _caa(activities: DomainActivities) -> p.CheckCaaResult:
    result: p.CheckCaaResult = ActivityEnvironment().run(
        activities.check_caa, p.CheckCaaInput(tenant_id=str(TENANT), domain=DOMAIN)
    )
    return result


def test_every_cname_check_records_target_ttl_and_time(
    service: DomainService, activities: DomainActivities, dns_server: LocalDnsServer
) -> None:
    canonical = service.request(TENANT, DOMAIN, "operator:test").canonical_host
    _walk(service, S.VERIFYING_DNS)
    dns_server.set_cname(DOMAIN, "old.hosting.example.net")
    before = service.get(TENANT).last_checked_at
    assert before is not None

    result = _verify(activities, DOMAIN, canonical)

    assert (result.matches, result.observed, result.ttl) == (False, "old.hosting.example.net", 5)
    view = service.get(TENANT)
    assert view.last_checked_at is not None
    assert view.last_checked_at > before
    check = view.verification_details["cname"]
    # When the lookup ran (the activity's clock; last_checked_at is the service's).
    assert datetime.fromisoformat(check["checked_at"]).tzinfo is not None
    assert {k: v for k, v in check.items() if k != "checked_at"} == {
        "name": DOMAIN,
        "expected": canonical,
        "observed": "old.hosting.example.net",
        "ttl": 5,
        "ok": False,
        "error": None,
    }
    assert view.verification_details["expected_cname"] == canonical
    assert view.status is S.VERIFYING_DNS

    dns_server.set_cname(DOMAIN, canonical)
    _verify(activities, DOMAIN, canonical)
    again = service.get(TENANT)
    assert again.last_checked_at is not None
    assert again.last_checked_at > view.last_checked_at
    assert again.verification_details["cname"]["ok"] is True
    assert again.verification_details["cname"]["observed"] == canonical


def test_a_failing_check_keeps_the_caa_and_challenge_results(
    service: DomainService, activities: DomainActivities, dns_server: LocalDnsServer
) -> None:
    canonical = service.request(TENANT, DOMAIN, "operator:test").canonical_host
    _walk(service, S.VERIFYING_DNS)
    challenge = f"_acme-challenge.{DOMAIN}"
    dns_server.set_cname(challenge, "3f2b6c1.acme.portal.algapsa.com")
    dns_server.set_caa("acme.com", 0, "issue", "letsencrypt.org")
    assert _caa(activities).allowed
    _verify(activities, challenge, "3f2b6c1.acme.portal.algapsa.com")

    _verify(activities, DOMAIN, canonical)  # no record at all: fails

    details = service.get(TENANT).verification_details
    assert details["cname"]["ok"] is False
    # the name exists (it has the _acme-challenge child) but has no record itself
    assert details["cname"]["error"].startswith("no CNAME record")
    assert details["challenge_cname"]["ok"] is True
    assert details["challenge_cname"]["observed"] == "3f2b6c1.acme.portal.algapsa.com"
    assert details["challenge_cname"]["name"] == challenge
    assert details["caa"]["ok"] is True
    assert "allows letsencrypt.org" in details["caa"]["message"]
    assert "checked_at" in details["caa"]


def test_a_refused_caa_is_recorded_in_its_own_part(
    service: DomainService, activities: DomainActivities, dns_server: LocalDnsServer
) -> None:
    canonical = service.request(TENANT, DOMAIN, "operator:test").canonical_host
    _walk(service, S.VERIFYING_DNS)
    dns_server.set_cname(DOMAIN, canonical)
    _verify(activities, DOMAIN, canonical)
    dns_server.set_caa("acme.com", 0, "issue", "digicert.com")

    assert not _caa(activities).allowed

    details = service.get(TENANT).verification_details
    assert details["caa"]["ok"] is False
    assert "allows only digicert.com" in details["caa"]["message"]
    assert details["cname"]["ok"] is True


def test_the_periodic_recheck_of_an_active_domain_records_a_lost_cname(
    service: DomainService, activities: DomainActivities, dns_server: LocalDnsServer
) -> None:
    canonical = service.request(TENANT, DOMAIN, "operator:test").canonical_host
    _walk(
        service,
        S.VERIFYING_DNS,
        S.PENDING_CERTIFICATE,
        S.CERTIFICATE_ISSUING,
        S.DEPLOYING,
        S.ACTIVE,
    )
    dns_server.set_cname(DOMAIN, canonical)
    _verify(activities, DOMAIN, canonical)
    checked = service.get(TENANT)
    assert not cname_lost(checked.status, checked.verification_details)

    dns_server.set_cname(DOMAIN, "elsewhere.example.net")
    _verify(activities, DOMAIN, canonical)

    lost = service.get(TENANT)
    assert lost.status is S.ACTIVE
    assert lost.version == checked.version  # a check is not a transition
    assert lost.last_checked_at is not None
    assert checked.last_checked_at is not None
    assert lost.last_checked_at > checked.last_checked_at
    assert lost.verification_details["cname"]["observed"] == "elsewhere.example.net"
    assert cname_lost(lost.status, lost.verification_details)


def test_a_check_of_a_hostname_the_tenant_has_replaced_writes_nothing(
    service: DomainService, activities: DomainActivities, dns_server: LocalDnsServer
) -> None:
    canonical = service.request(TENANT, DOMAIN, "operator:test").canonical_host
    service.request(TENANT, "clients.acme.com", "operator:test")
    before = service.get(TENANT)
    dns_server.set_cname(DOMAIN, canonical)

    assert _verify(activities, DOMAIN, canonical).matches

    assert service.get(TENANT) == before
