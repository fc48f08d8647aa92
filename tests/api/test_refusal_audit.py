"""Refused requests are audited with who asked, and cannot flood a tenant's audit log.

Issue 14 items 5 and 8: the attacks are replayed against the app in process
(SQLite, no Temporal) and must not get through.
"""

from __future__ import annotations

import argparse
import uuid

import pytest

from cli.common import parse_actor
from db.service import PLATFORM_LOG, AuditEntry
from tests.api.conftest import MakeApi
from tests.support.api import ADMIN, ISSUER, MEMBER, OPERATOR

DOMAIN = "/api/settings/client-portal/domain"


def _denied(entries: list[AuditEntry]) -> list[AuditEntry]:
    return [e for e in entries if e.outcome == "denied"]


# ------------------------------------------------------------ item 5: flooding


def test_two_hundred_refused_posts_do_not_write_two_hundred_rows_into_another_tenants_log(
    make_api: MakeApi,
) -> None:
    local = make_api(caller_limit=5, window=60)
    attacker, victim = uuid.uuid4(), uuid.uuid4()
    headers = local.headers(role=ADMIN, tenant=attacker, sub="mallory")
    statuses = []
    with local.client() as client:
        for n in range(200):
            response = client.post(
                DOMAIN,
                params={"tenant_id": str(victim)},
                json={"domain": f"x{n}-" + "a" * 60 + ".example.com" + "b" * 900},
                headers=headers,
            )
            statuses.append(response.status_code)
    # The caller's attempts are limited before RBAC (and before any audit) ...
    assert set(statuses) == {403, 429}
    assert statuses[:5] == [403] * 5
    assert statuses.count(429) >= 190
    # ... and the victim's log gets one row for the refusal and one counting its
    # repeats (written when the server stopped: the window was still open), not 200.
    victim_rows = _denied(local.audit(victim))
    assert len(victim_rows) == 2
    assert [e.detail["count"] for e in victim_rows if e.detail] == [1, 4]
    assert [e.detail["code"] for e in victim_rows if e.detail] == ["forbidden", "forbidden"]
    assert victim_rows[1].detail is not None
    assert victim_rows[1].detail["collapsed"] is True
    # The 429s are the attacker's own business: logged in its own tenant, collapsed.
    own = _denied(local.audit(attacker))
    assert len(own) == 2
    assert [e.detail["code"] for e in own if e.detail] == ["rate_limited", "rate_limited"]
    assert sum(e.detail["count"] for e in victim_rows + own if e.detail) == 200


def test_identical_refusals_in_one_window_share_a_row_and_a_new_window_starts_a_new_one(
    make_api: MakeApi,
) -> None:
    local = make_api(window=60)
    tenant = uuid.uuid4()
    headers = local.headers(role=MEMBER, tenant=tenant, sub="bob")
    with local.client() as client:
        for _ in range(3):
            assert client.delete(DOMAIN, headers=headers).status_code == 403
        local.clock.advance(61)
        # The next refusal finds the window over: the 2 repeats are written first.
        assert client.delete(DOMAIN, headers=headers).status_code == 403
    rows = _denied(local.audit(tenant))
    assert [e.detail["count"] for e in rows if e.detail is not None] == [1, 2, 1]


def test_refusals_past_the_callers_budget_are_counted_in_its_own_log(
    make_api: MakeApi,
) -> None:
    # Reads are not limited per caller, so the refusal budget is what bounds them:
    # cycling through victims writes at most `budget` rows into other tenants' logs.
    local = make_api(caller_limit=3, window=60)
    attacker = uuid.uuid4()
    victims = [uuid.uuid4() for _ in range(10)]
    headers = local.headers(role=ADMIN, tenant=attacker, sub="mallory")
    with local.client() as client:
        for victim in victims:
            response = client.get(DOMAIN, params={"tenant_id": str(victim)}, headers=headers)
            assert response.status_code == 403
    written = [v for v in victims if _denied(local.audit(v))]
    assert len(written) == 3
    local.clock.advance(61)
    local.refusals.flush()
    (overflow,) = _denied(local.audit(attacker))
    assert overflow.detail is not None
    assert overflow.detail["count"] == 7
    assert overflow.detail["targets"] == 7
    assert [v for v in victims if _denied(local.audit(v))] == written


# -------------------------------------------------------- item 8: attribution


def test_a_refusal_records_the_callers_tenant_role_and_issuer(make_api: MakeApi) -> None:
    local = make_api()
    caller, target = uuid.uuid4(), uuid.uuid4()
    with local.client() as client:
        response = client.post(
            DOMAIN + "/refresh",
            params={"tenant_id": str(target)},
            headers=local.headers(role=ADMIN, tenant=caller, sub="mallory"),
        )
    assert response.status_code == 403
    (row,) = _denied(local.audit(target))
    assert row.actor == "user:mallory"
    assert row.detail is not None
    assert row.detail["caller_tenant_id"] == str(caller)
    assert row.detail["caller_role"] == ADMIN
    assert row.detail["caller_issuer"] == ISSUER


def test_refused_gets_are_audited(make_api: MakeApi) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    with local.client() as client:
        audit = client.get(
            DOMAIN + "/audit", headers=local.headers(role=MEMBER, tenant=tenant, sub="bob")
        )
        other = client.get(
            DOMAIN,
            params={"tenant_id": str(tenant)},
            headers=local.headers(role=MEMBER, tenant=uuid.uuid4(), sub="eve"),
        )
    assert (audit.status_code, other.status_code) == (403, 403)
    rows = _denied(local.audit(tenant))
    assert [(e.action, e.actor) for e in rows] == [("audit", "user:bob"), ("read", "user:eve")]


def test_401s_are_audited_in_the_platform_log_and_collapsed(make_api: MakeApi) -> None:
    local = make_api()
    victim = uuid.uuid4()
    with local.client() as client:
        for _ in range(50):
            response = client.get(
                DOMAIN,
                params={"tenant_id": str(victim)},
                headers={"Authorization": "Bearer not-a-token"},
            )
            assert response.status_code == 401
        assert client.get(DOMAIN).status_code == 401
    # Unverified claims name no tenant: nothing reaches the tenant's log.
    assert local.audit(victim) == []
    # One row per caller and reason, and one counting the repeats (the server stopped).
    rows = _denied(local.audit(PLATFORM_LOG))
    assert {(e.action, e.actor) for e in rows} == {("authenticate", "anonymous:testclient")}
    assert [(e.detail["code"], e.detail["count"]) for e in rows if e.detail] == [
        ("invalid_token", 1),
        ("missing_token", 1),
        ("invalid_token", 49),
    ]


def test_body_validation_refusals_are_audited_where_the_caller_may_act(
    make_api: MakeApi,
) -> None:
    local = make_api()
    tenant, victim = uuid.uuid4(), uuid.uuid4()
    headers = local.headers(role=ADMIN, tenant=tenant, sub="alice")
    with local.client() as client:
        for _ in range(5):
            bad = client.post(DOMAIN, json={"domain": 42, "x": 1}, headers=headers)
            assert bad.status_code == 422
        # The same bad body aimed at another tenant stays in the caller's own log.
        aimed = client.post(
            DOMAIN, params={"tenant_id": str(victim)}, content=b"{", headers=headers
        )
        assert aimed.status_code in (415, 422)
    assert local.audit(victim) == []
    rows = _denied(local.audit(tenant))
    assert [(e.detail["code"], e.detail["count"]) for e in rows if e.detail] == [
        ("invalid_body", 1),
        ("unsupported_media_type", 1),
        ("invalid_body", 4),
    ]
    assert rows[0].action == "request"
    assert rows[0].detail is not None
    assert rows[0].detail["code"] == "invalid_body"
    assert rows[0].detail["caller_role"] == ADMIN


def test_the_tenant_does_not_see_an_operators_subject(make_api: MakeApi) -> None:
    local = make_api(api_env={"PORTAL_DOMAINS_EDITION": "enterprise"})
    tenant = uuid.uuid4()
    with local.client() as client:
        done = client.post(
            DOMAIN,
            params={"tenant_id": str(tenant)},
            json={"domain": f"portal-{tenant.hex[:8]}.acme.com"},
            headers=local.headers(role=OPERATOR, sub="ops-secret-name"),
        )
        assert done.status_code == 201, done.text
        # And a user of another tenant who tried: not named to this tenant either.
        client.delete(
            DOMAIN,
            params={"tenant_id": str(tenant)},
            headers=local.headers(role=ADMIN, tenant=uuid.uuid4(), sub="mallory"),
        )
        seen = client.get(
            DOMAIN + "/audit", headers=local.headers(role=ADMIN, tenant=tenant, sub="alice")
        )
        operator_view = client.get(
            DOMAIN + "/audit",
            params={"tenant_id": str(tenant)},
            headers=local.headers(role=OPERATOR, sub="ops-2"),
        )
    assert seen.status_code == 200, seen.text
    assert "ops-secret-name" not in seen.text
    assert "mallory" not in seen.text
    assert [e["actor"] for e in seen.json()["entries"]] == [
        "user of another tenant",
        "platform operator",
    ]
    assert [e["actor"] for e in operator_view.json()["entries"]] == [
        "user:mallory",
        "operator:ops-secret-name",
    ]
    assert local.audit(tenant)[0].actor == "operator:ops-secret-name"


@pytest.mark.parametrize(
    ("raw", "recorded"),
    [
        ("alice", "operator:alice"),
        ("operator:alice", "operator:alice"),
        ("ticket:OPS-42", "ticket:OPS-42"),
    ],
)
def test_the_cli_actor_is_recorded_as_an_operator(raw: str, recorded: str) -> None:
    assert parse_actor(raw) == recorded


@pytest.mark.parametrize(
    "raw",
    [
        "user:alice",  # poses as a tenant's user of the API
        "reconciler:x",
        "anonymous:10.0.0.1",
        "",
        "alice smith",
        "operator:alice\nreconciler",
        "a" * 200,
        "operator:",
    ],
)
def test_the_cli_refuses_an_actor_that_could_pose_as_someone_else(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_actor(raw)
