"""RBAC: the pure decision table, and the same matrix through the running API.

Every role x every action x own/other tenant, against uvicorn with a real
PostgreSQL database and the Temporal dev server; denied requests, reads too,
leave an audit row (outcome "denied", actor user:<sub>, the caller's tenant,
role and issuer in its detail) on the tenant they targeted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

import pytest

from api.rbac import ApiAction, decide
from api.settings import RoleNames
from tests.support.api import ADMIN, MEMBER, OPERATOR, RunningApi, error_code, running_api
from tests.support.services import create_database

UNKNOWN = "billing_viewer"
A = ApiAction
TENANT_A = UUID("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f")
TENANT_B = UUID("9a8b7c6d-1111-4222-8333-444455556666")

# role -> actions allowed on its own tenant, on another tenant
ALLOWED: dict[str, tuple[set[ApiAction], set[ApiAction]]] = {
    ADMIN: (set(ApiAction), set()),
    MEMBER: ({A.READ}, set()),
    OPERATOR: (set(ApiAction), set(ApiAction)),
    UNKNOWN: (set(), set()),
}

MATRIX = [
    pytest.param(role, action, own, id=f"{role}-{action}-{'own' if own else 'other'}")
    for role in ALLOWED
    for action in ApiAction
    for own in (True, False)
]


def _expected(role: str, action: ApiAction, own: bool) -> bool:
    on_own, on_other = ALLOWED[role]
    return action in (on_own if own else on_other)


# --------------------------------------------------------------- pure decision


@pytest.mark.parametrize(("role", "action", "own"), MATRIX)
def test_decision_table(role: str, action: ApiAction, own: bool) -> None:
    decision = decide(role, action, TENANT_A, TENANT_A if own else TENANT_B)
    assert decision.allowed is _expected(role, action, own)
    assert decision.reason


def test_tenant_roles_without_a_tenant_in_the_token_are_denied() -> None:
    for role in (ADMIN, MEMBER):
        decision = decide(role, A.READ, None, TENANT_A)
        assert not decision.allowed
        assert "tenant_id" in decision.reason


def test_an_operator_must_name_a_tenant() -> None:
    assert not decide(OPERATOR, A.READ, None, None).allowed
    assert decide(OPERATOR, A.DISABLE, None, TENANT_B).allowed


def test_denials_say_what_would_be_needed() -> None:
    assert "tenant_admin role" in decide(MEMBER, A.REQUEST, TENANT_A, TENANT_A).reason
    assert "own tenant" in decide(ADMIN, A.READ, TENANT_A, TENANT_B).reason
    assert "no access" in decide(UNKNOWN, A.READ, TENANT_A, TENANT_A).reason


def test_role_names_are_configurable() -> None:
    roles = RoleNames(admin="owner", readers=frozenset({"viewer"}), operator="sre")
    assert decide("owner", A.DISABLE, TENANT_A, TENANT_A, roles=roles).allowed
    assert decide("viewer", A.READ, TENANT_A, TENANT_A, roles=roles).allowed
    assert decide("sre", A.REQUEST, None, TENANT_B, roles=roles).allowed
    assert not decide(ADMIN, A.READ, TENANT_A, TENANT_A, roles=roles).allowed


# ------------------------------------------------------------ through the API


@pytest.fixture(scope="module")
def api(
    postgres_admin_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    database_url = create_database(postgres_admin_url, f"rbac_{uuid.uuid4().hex[:12]}")
    with running_api(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=tmp_path_factory.mktemp("rbac"),
    ) as running:
        yield running


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, str] | None


def _call(action: ApiAction, domain: str) -> Call:
    if action is A.READ:
        return Call("GET", "", None)
    if action is A.REQUEST:
        return Call("POST", "", {"domain": domain})
    if action is A.REFRESH:
        return Call("POST", "/refresh", None)
    if action is A.AUDIT:
        return Call("GET", "/audit", None)
    return Call("DELETE", "", None)


@pytest.mark.postgres
@pytest.mark.temporal
@pytest.mark.parametrize(("role", "action", "own"), MATRIX)
def test_rbac_matrix_through_the_api(
    api: RunningApi, role: str, action: ApiAction, own: bool
) -> None:
    caller, other = uuid.uuid4(), uuid.uuid4()
    target = caller if own else other
    existing = f"portal-{target.hex[:8]}.acme.com"
    api.service.request(target, existing, "operator:setup")
    audit_before = len(api.audit(target))
    sub = f"user-{uuid.uuid4().hex[:8]}"
    call = _call(action, f"new-{target.hex[:8]}.acme.com")

    with api.client() as client:
        response = client.request(
            call.method,
            api.domain_url + call.path,
            params={"tenant_id": str(target)},
            json=call.body,
            headers=api.headers(role=role, tenant=caller, sub=sub),
        )

    audit = api.audit(target)[audit_before:]
    if _expected(role, action, own):
        assert response.status_code == 200, response.text
        assert response.json()["tenant_id"] == str(target)
        if action.mutates:
            assert (audit[-1].action, audit[-1].outcome, audit[-1].actor) == (
                "replace" if action is A.REQUEST else action.value,
                "ok",
                f"{'operator' if role == OPERATOR else 'user'}:{sub}",
            )
        else:
            assert audit == []
    else:
        assert response.status_code == 403, response.text
        assert error_code(response) == "forbidden"
        assert role in response.json()["error"]["message"]
        # Refused reads are audited too (issue 14 item 8).
        assert len(audit) == 1
        (entry,) = audit
        assert entry.outcome == "denied"
        assert entry.actor == f"user:{sub}"
        assert entry.action == action.value
        assert entry.detail is not None
        assert str(entry.detail["reason"]).startswith("forbidden: ")
        assert (entry.detail["caller_tenant_id"], entry.detail["caller_role"]) == (
            str(caller),
            role,
        )
        if call.body is not None:
            assert entry.domain == call.body["domain"]
        # Nothing changed.
        assert api.service.get(target).domain == existing


@pytest.mark.postgres
@pytest.mark.temporal
def test_the_target_defaults_to_the_callers_tenant(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.post(
            api.domain_url,
            json={"domain": f"portal-{tenant.hex[:8]}.acme.com"},
            headers=api.headers(role=ADMIN, tenant=tenant),
        )
        assert response.status_code == 201, response.text
        assert response.json()["tenant_id"] == str(tenant)
        own = client.get(
            api.domain_url,
            params={"tenant_id": str(tenant)},
            headers=api.headers(role=MEMBER, tenant=tenant),
        )
        assert own.status_code == 200
        assert own.json()["domain"] == f"portal-{tenant.hex[:8]}.acme.com"


@pytest.mark.postgres
@pytest.mark.temporal
def test_operators_must_pass_a_tenant_id(api: RunningApi) -> None:
    with api.client() as client:
        for method, path in (("GET", ""), ("POST", "/refresh"), ("DELETE", "")):
            response = client.request(
                method, api.domain_url + path, headers=api.headers(role=OPERATOR)
            )
            assert response.status_code == 422, response.text
            assert error_code(response) == "tenant_id_required"
            assert response.json()["error"]["field"] == "tenant_id"


@pytest.mark.postgres
@pytest.mark.temporal
def test_a_tenant_role_token_without_tenant_is_forbidden(api: RunningApi) -> None:
    with api.client() as client:
        response = client.delete(api.domain_url, headers=api.headers(role=ADMIN))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert "tenant_id" in response.json()["error"]["message"]


@pytest.mark.postgres
@pytest.mark.temporal
@pytest.mark.parametrize("raw", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "12"])
def test_a_malformed_tenant_id_is_a_422(api: RunningApi, raw: str) -> None:
    with api.client() as client:
        response = client.get(
            api.domain_url, params={"tenant_id": raw}, headers=api.headers(role=OPERATOR)
        )
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_tenant_id"


@pytest.mark.postgres
@pytest.mark.temporal
def test_a_denied_request_audits_the_hostname_it_asked_for(api: RunningApi) -> None:
    caller, victim = uuid.uuid4(), uuid.uuid4()
    with api.client() as client:
        response = client.post(
            api.domain_url,
            params={"tenant_id": str(victim)},
            json={"domain": "portal.victim.com"},
            headers=api.headers(role=ADMIN, tenant=caller, sub="mallory"),
        )
    assert response.status_code == 403
    (entry,) = api.audit(victim)
    assert (entry.action, entry.outcome, entry.actor, entry.domain) == (
        "request",
        "denied",
        "user:mallory",
        "portal.victim.com",
    )
