"""The domain endpoints against the running API: PostgreSQL, Temporal dev server, uvicorn."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.middleware import MAX_BODY_BYTES
from core.hostnames import REASON_CODES
from core.status import DomainStatus
from tests.support.api import (
    ADMIN,
    MEMBER,
    OPERATOR,
    RunningApi,
    dns01_stack_dir,
    error_code,
    running_api,
)
from tests.support.services import create_database

pytestmark = [pytest.mark.postgres, pytest.mark.temporal]


@pytest.fixture(scope="module")
def api(
    postgres_admin_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    database_url = create_database(postgres_admin_url, f"domain_{uuid.uuid4().hex[:12]}")
    with running_api(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=tmp_path_factory.mktemp("domain"),
    ) as running:
        yield running


def _host(tenant: UUID, label: str = "portal") -> str:
    return f"{label}-{tenant.hex[:10]}.acme.com"


def _describe(address: str, tenant: UUID) -> WorkflowExecutionDescription:
    """The tenant's workflow, once the outbox dispatcher has started it (within 20 s)."""

    async def describe() -> WorkflowExecutionDescription:
        client = await Client.connect(address)
        handle = client.get_workflow_handle(f"portal-domain-{tenant}")
        deadline = time.monotonic() + 20
        while True:
            try:
                return await handle.describe()
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)

    return asyncio.run(describe())


def _delivered(api: RunningApi) -> None:
    """Wait (20 s at most) until the outbox holds nothing: every signal went out."""
    deadline = time.monotonic() + 20
    while api.service.queued_signals():
        assert time.monotonic() < deadline, api.service.queued_signals()
        time.sleep(0.1)


def _admin(api: RunningApi, tenant: UUID, sub: str = "alice") -> dict[str, str]:
    return api.headers(role=ADMIN, tenant=tenant, sub=sub)


# --------------------------------------------------------------------- request


def test_a_request_is_saved_and_starts_the_tenants_registration_workflow(
    api: RunningApi, temporal_address: str
) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.post(
            api.domain_url, json={"domain": _host(tenant)}, headers=_admin(api, tenant)
        )
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/settings/client-portal/domain"
    body = response.json()
    assert body["domain"] == _host(tenant)
    assert body["status"] == "pending_dns"
    assert body["canonical_host"] == f"{tenant.hex[:7]}.portal.algapsa.com"
    assert body["canonical_host_assigned"] is True
    assert body["guidance"]["dns"]["record"] == (
        f"{_host(tenant)}. 3600 IN CNAME {tenant.hex[:7]}.portal.algapsa.com."
    )
    assert body["guidance"]["actions"] == ["refresh", "remove", "request_new_domain"]

    description = _describe(temporal_address, tenant)
    assert description.status is WorkflowExecutionStatus.RUNNING
    assert description.task_queue == api.settings.task_queue


def test_repeating_a_request_returns_200_with_the_same_row_and_the_same_workflow_run(
    api: RunningApi, temporal_address: str
) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        first = client.post(
            api.domain_url, json={"domain": _host(tenant)}, headers=_admin(api, tenant)
        )
        run_id = _describe(temporal_address, tenant).run_id
        # Differently typed, same hostname once normalised.
        again = client.post(
            api.domain_url,
            json={"domain": f"  {_host(tenant).upper()}. "},
            headers=_admin(api, tenant),
        )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    _delivered(api)
    # Signal-with-start on the running workflow: a signal, not a second run.
    assert _describe(temporal_address, tenant).run_id == run_id
    assert [(e.action, e.outcome) for e in api.audit(tenant)] == [
        ("request", "ok"),
        ("request", "noop"),
    ]


def test_requesting_another_hostname_replaces_the_first(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        client.post(api.domain_url, json={"domain": _host(tenant)}, headers=_admin(api, tenant))
        replaced = client.post(
            api.domain_url,
            json={"domain": _host(tenant, "clients")},
            headers=_admin(api, tenant, sub="bob"),
        )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["domain"] == _host(tenant, "clients")
    last = api.audit(tenant)[-1]
    assert (last.action, last.outcome, last.actor) == ("replace", "ok", "user:bob")


def test_unverified_claims_do_not_block_and_a_verified_one_does_without_naming_its_holder(
    api: RunningApi,
) -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    host = _host(first, "contested")
    barrier = threading.Barrier(2)
    results: dict[UUID, httpx.Response] = {}

    def claim(tenant: UUID) -> None:
        with api.client() as client:
            barrier.wait()
            results[tenant] = client.post(
                api.domain_url, json={"domain": host}, headers=_admin(api, tenant)
            )

    threads = [threading.Thread(target=claim, args=(t,)) for t in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Neither has proved DNS control yet: a squatter's claim cannot block the owner.
    assert sorted(r.status_code for r in results.values()) == [201, 201]

    # The owner's DNS is verified: from now on the hostname is theirs.
    api.service.record_status(
        first,
        expected_status=DomainStatus.PENDING_DNS,
        new_status=DomainStatus.VERIFYING_DNS,
        message="checking",
    )
    api.service.record_status(
        first,
        expected_status=DomainStatus.VERIFYING_DNS,
        new_status=DomainStatus.PENDING_CERTIFICATE,
        message="verified",
    )
    with api.client() as client:
        refused = client.post(api.domain_url, json={"domain": host}, headers=_admin(api, third))
    assert refused.status_code == 409, refused.text
    assert error_code(refused) == "domain_already_claimed"
    assert str(first) not in refused.text  # who holds it is not revealed
    assert f"{first.hex[:7]}.portal.algapsa.com" not in refused.text  # nor its canonical host
    assert [(e.action, e.outcome) for e in api.audit(third)] == [("request", "conflict")]


# ------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 422, "invalid_body"),
        (b"[]", "application/json", 422, "invalid_body"),
        (b"{}", "application/json", 422, "invalid_body"),
        (b'{"domain": 42}', "application/json", 422, "invalid_body"),
        (b'{"domain": null}', "application/json", 422, "invalid_body"),
        (b'{"domain": ["portal.acme.com"]}', "application/json", 422, "invalid_body"),
        (b'{"domain": "portal.acme.com", "admin": true}', "application/json", 422, "invalid_body"),
        (b'"portal.acme.com"', "application/json", 422, "invalid_body"),
        (b"domain=portal.acme.com", "application/x-www-form-urlencoded", 415, None),
        (b'{"domain": "portal.acme.com"}', "text/plain", 415, None),
    ],
)
def test_malformed_bodies_are_refused_without_touching_the_database(
    api: RunningApi, content: bytes, content_type: str, status: int, code: str | None
) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.post(
            api.domain_url,
            content=content,
            headers={**_admin(api, tenant), "content-type": content_type},
        )
    assert response.status_code == status, response.text
    assert error_code(response) == (code or "unsupported_media_type")
    assert "Traceback" not in response.text
    # No domain row; only the refusal is audited (issue 14 item 8).
    assert [(e.action, e.outcome, e.domain) for e in api.audit(tenant)] == [
        ("request", "denied", None)
    ]


HOSTNAMES = [
    ("", "empty"),
    ("acme.com", "registrable_domain"),
    ("co.uk", "registrable_domain"),
    ("*.acme.com", "wildcard"),
    ("192.0.2.10", "ip_address"),
    ("[::1]", "ip_address"),
    ("portal_x.acme.com", "invalid_characters"),
    ("portal acme.com", "invalid_characters"),
    ("acmeportal", "single_label"),
    ("portal.localhost", "reserved"),
    ("portal.example.com", "reserved"),
    ("x.portal.algapsa.com", "base_domain"),
    ("portal.acme.notarealtld", "unknown_tld"),
    ("-portal.acme.com", "label_hyphen"),
    ("portal..acme.com", "empty_label"),
    ("a" * 64 + ".acme.com", "label_too_long"),
    (".".join(["a" * 60] * 5) + ".com", "too_long"),
    ("p\u0430ypal.acme.com", "mixed_script"),  # Cyrillic a
    ("ab--cd.acme.com", "invalid_idna"),
]


def test_the_hostname_cases_cover_every_reason_code() -> None:
    assert {code for _, code in HOSTNAMES} == set(REASON_CODES)


@pytest.mark.parametrize(("host", "code"), HOSTNAMES)
def test_invalid_hostnames_are_422_with_the_validators_reason_code(
    api: RunningApi, host: str, code: str
) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.post(api.domain_url, json={"domain": host}, headers=_admin(api, tenant))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, "domain")
    assert error["message"]
    (entry,) = api.audit(tenant)
    assert (entry.action, entry.outcome, entry.actor) == ("request", "rejected", "user:alice")


def test_a_body_over_the_limit_is_413(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.post(
            api.domain_url,
            json={"domain": "a" * (MAX_BODY_BYTES + 1)},
            headers=_admin(api, tenant),
        )
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


# --------------------------------------------------------- read, refresh, remove


def test_get_without_a_domain_is_200_with_null_status_and_the_likely_canonical_host(
    api: RunningApi,
) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.get(api.domain_url, headers=_admin(api, tenant))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] is None
    assert body["domain"] is None
    assert body["canonical_host"] == f"{tenant.hex[:7]}.portal.algapsa.com"
    assert body["canonical_host_assigned"] is False
    assert body["guidance"]["actions"] == ["request_new_domain"]
    assert body["guidance"]["dns"]["sample"] is True
    assert response.headers["cache-control"] == "no-store"


def test_refresh_and_remove_of_a_tenant_without_a_domain_are_404(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        for method, path in (("POST", "/refresh"), ("DELETE", "")):
            response = client.request(method, api.domain_url + path, headers=_admin(api, tenant))
            assert response.status_code == 404, response.text
            assert error_code(response) == "domain_not_found"


def test_the_lifecycle_request_refresh_remove_and_re_request(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    host = _host(tenant)
    headers = _admin(api, tenant)
    with api.client() as client:
        assert client.post(api.domain_url, json={"domain": host}, headers=headers).is_success

        refreshed = client.post(api.domain_url + "/refresh", headers=headers)
        assert refreshed.status_code == 200
        assert refreshed.json()["status"] == "pending_dns"

        removed = client.delete(api.domain_url, headers=headers)
        assert removed.status_code == 200
        assert removed.json()["status"] == "disabled"
        assert removed.json()["removal"] == "requested"
        assert removed.json()["guidance"]["actions"] == ["request_new_domain"]
        again = client.delete(api.domain_url, headers=headers)
        assert again.status_code == 200
        assert again.json() == removed.json()

        refused = client.post(api.domain_url + "/refresh", headers=headers)
        assert refused.status_code == 409
        assert error_code(refused) == "domain_disabled"

        back = client.post(api.domain_url, json={"domain": host}, headers=headers)
        assert back.status_code == 200
        assert back.json()["status"] == "pending_dns"
        assert back.json()["removal"] is None

        status = client.get(api.domain_url, headers=headers).json()
        assert (status["domain"], status["status"]) == (host, "pending_dns")
    assert [(e.action, e.outcome) for e in api.audit(tenant)] == [
        ("request", "ok"),
        ("refresh", "ok"),
        ("disable", "ok"),
        ("disable", "noop"),
        ("refresh", "rejected"),
        ("request", "ok"),
    ]
    assert {e.actor for e in api.audit(tenant)} == {"user:alice"}


def test_get_shows_the_status_the_reconciler_wrote_with_its_guidance(api: RunningApi) -> None:
    from core.status import DomainStatus as S

    tenant = uuid.uuid4()
    api.service.request(tenant, _host(tenant), "operator:setup")
    api.service.record_status(
        tenant,
        expected_status=S.PENDING_DNS,
        new_status=S.VERIFYING_DNS,
        message="checking",
    )
    api.service.record_status(
        tenant,
        expected_status=S.VERIFYING_DNS,
        new_status=S.DNS_FAILED,
        message="portal resolves to 203.0.113.7, not a CNAME to the canonical host",
    )
    with api.client() as client:
        body = client.get(api.domain_url, headers=_admin(api, tenant)).json()
    assert body["status"] == "dns_failed"
    assert body["status_message"].startswith("portal resolves to 203.0.113.7")
    assert body["last_checked_at"] is not None
    assert body["guidance"]["tone"] == "error"
    assert body["guidance"]["polling"] is False
    assert "Refresh to retry" in body["guidance"]["next_step"]


def test_an_operator_acts_on_a_tenant_and_is_audited_by_subject(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.post(
            api.domain_url,
            params={"tenant_id": str(tenant)},
            json={"domain": _host(tenant)},
            headers=api.headers(role=OPERATOR, sub="ops-7"),
        )
    assert response.status_code == 201, response.text
    # Recorded as an operator, so the tenant-facing audit trail can hide the name.
    assert api.audit(tenant)[0].actor == "operator:ops-7"


# ------------------------------------------------------------------- errors


def test_unknown_paths_and_methods_answer_in_the_error_format(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        missing = client.get("/api/settings/nothing-here", headers=_admin(api, tenant))
        wrong = client.put(api.domain_url, headers=_admin(api, tenant))
    assert (missing.status_code, error_code(missing)) == (404, "not_found")
    assert (wrong.status_code, error_code(wrong)) == (405, "method_not_allowed")
    assert "GET" in wrong.headers["allow"]


def test_an_unexpected_failure_is_a_500_without_details_and_is_logged(
    postgres_url: str,
    temporal_address: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_api(
        database_url=postgres_url, temporal_address=temporal_address, work_dir=tmp_path
    ) as api:
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE portal_domains"))
        engine.dispose()
        tenant = uuid.uuid4()
        with caplog.at_level(logging.ERROR, logger="api.app"), api.client() as client:
            response = client.get(api.domain_url, headers=_admin(api, tenant))
    assert response.status_code == 500
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "internal_error"
    reference = error["message"].split("reference ")[1].split(")")[0]
    for leak in ("Traceback", "portal_domains", "psycopg", "sqlalchemy", "File "):
        assert leak not in response.text
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None


# ------------------------------------------------------------ DNS-01 delegation


def test_an_environment_issuing_by_dns01_delegation_shows_both_records(
    postgres_admin_url: str, temporal_address: str, tmp_path: Path
) -> None:
    stack_dir = dns01_stack_dir(tmp_path / "stacks")
    database_url = create_database(postgres_admin_url, f"dns01_{uuid.uuid4().hex[:12]}")
    with running_api(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=tmp_path / "home",
        extra_env={"PORTAL_DOMAINS_STACK_CONFIG_DIR": str(stack_dir)},
    ) as dns01_api:
        tenant = uuid.uuid4()
        with dns01_api.client() as client:
            response = client.post(
                dns01_api.domain_url,
                json={"domain": _host(tenant)},
                headers=_admin(dns01_api, tenant),
            )
    assert response.status_code == 201, response.text
    guidance = response.json()["guidance"]
    prefix = tenant.hex[:7]
    assert guidance["challenge_dns"]["record"] == (
        f"_acme-challenge.{_host(tenant)}. 3600 IN CNAME {prefix}.acme.portal.algapsa.com."
    )
    assert [r["name"] for r in guidance["records"]] == [
        _host(tenant),
        f"_acme-challenge.{_host(tenant)}",
    ]


def test_an_http01_environment_shows_one_record_and_no_challenge_cname(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.get(api.domain_url, headers=_admin(api, tenant))
    assert response.status_code == 200, response.text
    guidance = response.json()["guidance"]
    assert guidance["challenge_dns"] is None
    assert len(guidance["records"]) == 1


# ------------------------------------------------------------ audit read path


def test_a_tenant_admin_reads_its_own_audit_trail_newest_first(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    headers = _admin(api, tenant)
    with api.client() as client:
        assert client.post(api.domain_url, json={"domain": _host(tenant)}, headers=headers)
        api.service.disable(tenant, "operator:carol")
        response = client.get(api.domain_url + "/audit", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant_id"] == str(tenant)
    actions = [(e["action"], e["outcome"]) for e in body["entries"]]
    assert actions[0] == ("disable", "ok")
    assert ("request", "ok") in actions
    assert body["entries"][-1]["actor"] == "user:alice"
    # An operator's name is not shown to the tenant.
    assert body["entries"][0]["actor"] == "platform operator"


def test_an_operator_reads_any_tenants_audit_trail_with_names(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        client.post(api.domain_url, json={"domain": _host(tenant)}, headers=_admin(api, tenant))
        api.service.disable(tenant, "operator:carol")
        response = client.get(
            api.domain_url + "/audit",
            params={"tenant_id": str(tenant), "limit": 1},
            headers=api.headers(role=OPERATOR, tenant=None, sub="carol"),
        )
    assert response.status_code == 200, response.text
    entries = response.json()["entries"]
    assert len(entries) == 1
    assert entries[0]["actor"] == "operator:carol"


@pytest.mark.parametrize("who", ["member", "other-tenant-admin"])
def test_members_and_other_tenants_cannot_read_the_audit_trail(api: RunningApi, who: str) -> None:
    tenant = uuid.uuid4()
    headers = (
        api.headers(role=MEMBER, tenant=tenant) if who == "member" else _admin(api, uuid.uuid4())
    )
    with api.client() as client:
        client.post(api.domain_url, json={"domain": _host(tenant)}, headers=_admin(api, tenant))
        response = client.get(
            api.domain_url + "/audit", params={"tenant_id": str(tenant)}, headers=headers
        )
    assert response.status_code == 403, response.text


# ------------------------------------------------------------ hostile input


@pytest.mark.parametrize(
    ("escaped", "stored"),
    # JSON escapes: a NUL byte (PostgreSQL text cannot hold it) and a lone surrogate
    # (not encodable as UTF-8). Both once gave a 500 and no audit row.
    [("\\u0000", "\\x00"), ("\\ud800", "\\ud800")],
    ids=["nul", "lone-surrogate"],
)
def test_a_nul_or_lone_surrogate_in_the_hostname_is_a_422_and_audited_escaped(
    api: RunningApi, escaped: str, stored: str
) -> None:
    tenant = uuid.uuid4()
    body = f'{{"domain": "portal{escaped}.acme.com"}}'.encode()
    with api.client() as client:
        response = client.post(
            api.domain_url,
            content=body,
            headers={**_admin(api, tenant), "Content-Type": "application/json"},
        )
    assert response.status_code == 422, response.text
    assert error_code(response) in {"invalid_characters", "invalid_idna"}
    (entry,) = api.audit(tenant)
    assert entry.outcome == "rejected"
    assert entry.domain == f"portal{stored}.acme.com"


def test_a_503_says_the_change_is_saved_with_a_reference_and_leaks_nothing_internal(
    postgres_admin_url: str,
    temporal_address: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database_url = create_database(postgres_admin_url, f"down_{uuid.uuid4().hex[:12]}")
    with running_api(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=tmp_path / "home",
    ) as down:
        # The after-commit hook fails with internal detail in its message.
        def failing_hook(change: object) -> None:
            raise RuntimeError(f"namespace secret-namespace-x at {temporal_address} refused")

        down.service._on_committed = failing_hook
        tenant = uuid.uuid4()
        with down.client() as client, caplog.at_level("ERROR", logger="api.errors"):
            response = client.post(
                down.domain_url, json={"domain": _host(tenant)}, headers=_admin(down, tenant)
            )
        saved = down.service.get(tenant)
    assert response.status_code == 503, response.text
    assert error_code(response) == "hook_failed"
    message = response.json()["error"]["message"]
    assert message.startswith("the change is saved")
    assert temporal_address not in response.text
    assert "secret-namespace-x" not in response.text
    reference = message.rsplit("reference ", 1)[1].rstrip(")")
    # Operators find the detail in the log under the same reference.
    assert any(reference in r.getMessage() for r in caplog.records)
    assert saved.domain == _host(tenant)


def test_when_temporal_refuses_the_start_the_request_is_answered_and_the_signal_stays_queued(
    postgres_admin_url: str, temporal_address: str, tmp_path: Path
) -> None:
    database_url = create_database(postgres_admin_url, f"refused_{uuid.uuid4().hex[:12]}")
    # Temporal answers, but refuses every start (no such namespace).
    with running_api(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=tmp_path / "home",
        extra_env={"PORTAL_DOMAINS_TEMPORAL_NAMESPACE": "secret-namespace-x"},
    ) as down:
        tenant = uuid.uuid4()
        with down.client() as client:
            response = client.post(
                down.domain_url, json={"domain": _host(tenant)}, headers=_admin(down, tenant)
            )
        assert response.status_code == 201, response.text
        assert "secret-namespace-x" not in response.text
        deadline = time.monotonic() + 20
        while not (queued := down.service.queued_signals())[0].attempts:
            assert time.monotonic() < deadline, "the dispatcher never tried"
            time.sleep(0.1)
    # Saved, queued for the next dispatcher pass, and the reason kept for operators.
    assert down.service.get(tenant).domain == _host(tenant)
    assert [(q.tenant_id, q.signal) for q in queued] == [(tenant, "refresh")]
    assert queued[0].last_error is not None
    assert "secret-namespace-x" in queued[0].last_error


def test_the_status_carries_the_checks_the_request_time_and_a_lost_cname_warning(
    api: RunningApi,
) -> None:
    from core.status import DomainStatus as S

    tenant = uuid.uuid4()
    host = _host(tenant)
    canonical = api.service.request(tenant, host, "operator:setup").canonical_host
    path = [S.VERIFYING_DNS, S.PENDING_CERTIFICATE, S.CERTIFICATE_ISSUING, S.DEPLOYING]
    current = S.PENDING_DNS
    for target in [*path, S.ACTIVE]:
        api.service.record_status(
            tenant, expected_status=current, new_status=target, message=str(target)
        )
        current = target
    checked_at = "2026-12-01T10:00:00+00:00"
    api.service.record_status(
        tenant,
        expected_status=S.ACTIVE,
        new_status=S.ACTIVE,
        message=f"Warning: {host} no longer points at {canonical}",
        details={
            "cname": {
                "name": host,
                "expected": canonical,
                "observed": "elsewhere.example.net",
                "ttl": 300,
                "checked_at": checked_at,
                "ok": False,
                "error": None,
            },
            "caa": {"ok": True, "message": "no CAA records", "checked_at": checked_at},
            "deploy_error": "internal: never shown to tenants",
        },
    )
    with api.client() as client:
        body = client.get(api.domain_url, headers=_admin(api, tenant)).json()

    assert body["status"] == "active"
    assert body["guidance"]["tone"] == "warning"
    assert body["guidance"]["title"] == "CNAME record changed"
    details = body["verification_details"]
    assert details["expected_cname"] == canonical
    assert details["cname_lost"] is True
    assert details["requested_at"] is not None
    assert details["cname"] == {
        "name": host,
        "expected": canonical,
        "observed": "elsewhere.example.net",
        "ttl": 300,
        "checked_at": "2026-12-01T10:00:00Z",
        "ok": False,
        "error": None,
    }
    assert details["caa"]["ok"] is True
    assert details["challenge_cname"] is None
    assert "deploy_error" not in str(body)


def test_a_failed_certificate_shows_its_reason(api: RunningApi) -> None:
    from core.status import DomainStatus as S

    tenant = uuid.uuid4()
    api.service.request(tenant, _host(tenant), "operator:setup")
    current = S.PENDING_DNS
    for target in [S.VERIFYING_DNS, S.PENDING_CERTIFICATE, S.CERTIFICATE_ISSUING]:
        api.service.record_status(
            tenant, expected_status=current, new_status=target, message=str(target)
        )
        current = target
    api.service.record_status(
        tenant,
        expected_status=S.CERTIFICATE_ISSUING,
        new_status=S.CERTIFICATE_FAILED,
        message="No valid certificate yet",
        details={"certificate": {"ok": False, "reason": "cert-manager: Failed: 429 rate limit"}},
    )
    with api.client() as client:
        body = client.get(api.domain_url, headers=_admin(api, tenant)).json()

    assert body["status"] == "certificate_failed"
    assert body["verification_details"]["certificate"]["reason"] == (
        "cert-manager: Failed: 429 rate limit"
    )
    assert body["verification_details"]["cname_lost"] is False
