"""The operator console over plain HTTP: charts, the tenant's deployment, the environment page.

In process on SQLite (make_api). Temporal is pointed at a closed port where a
test needs it unreachable; the real stack (Pulumi engine) and the Temporal dev
server only where the test says so by its markers.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from api.refusals import PLATFORM_LOG
from api.web.environment import held_deletions
from db.service import REMOVAL, REMOVAL_HELD, AuditEntry, DomainService
from reconciler.wiring import environment_stack
from tests.api.conftest import LocalApi, MakeApi
from tests.web.conftest import S, host_for, walk

ENVIRONMENT = "/console/environment"
# Nothing listens there: Temporal is unreachable, and no CI server is touched by mistake.
NO_TEMPORAL = {"PORTAL_DOMAINS_TEMPORAL_ADDRESS": "127.0.0.1:1"}


def _signed_in(
    local: LocalApi, tenant: UUID | None, role: str = "platform_operator", sub: str = "ops"
) -> Any:
    client = local.client()
    answer = client.get(
        "/portal/session",
        params={"token": local.token(role=role, tenant=tenant, sub=sub)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', text)
    assert found, text
    return found.group(1)


def _console_rows(local: LocalApi, tenant: UUID, action: str) -> list[AuditEntry]:
    return [e for e in local.audit(tenant) if e.action == action]


def _held(service: DomainService, tenant: UUID) -> None:
    service.request(tenant, host_for(tenant), "user:setup")
    walk(service, tenant, S.ACTIVE)
    service.disable(tenant, "user:setup")
    view = service.get(tenant)
    service.record_status(
        tenant,
        expected_status=S.DISABLED,
        new_status=S.DISABLED,
        message="Removal held: over the deletion cap.",
        details={**view.verification_details, REMOVAL: REMOVAL_HELD},
        actor="reconciler",
    )


# ------------------------------------------------------------------ charts


def test_the_console_draws_time_to_active_and_status_per_day_from_the_audit_trail(
    make_api: MakeApi,
) -> None:
    local = make_api()
    active, waiting = uuid.uuid4(), uuid.uuid4()
    for tenant, status in ((active, S.ACTIVE), (waiting, S.DNS_FAILED)):
        local.service.request(tenant, host_for(tenant), "user:setup")
        walk(local.service, tenant, status)
    page = _signed_in(local, None).get("/console")
    assert page.status_code == 200
    bars = re.findall(r'<g class="bar" data-tenant="([^"]+)" data-domain="([^"]+)"', page.text)
    assert bars == [(str(active), host_for(active))]
    today = datetime.now(UTC).date().isoformat()
    column = re.search(
        rf'<g class="day" data-day="{today}" data-total="(\d+)">(.*?)</g>', page.text, re.S
    )
    assert column is not None
    assert column.group(1) == "2"
    segments = dict(re.findall(r'data-status="([a-z_]+)" data-count="(\d+)"', column.group(2)))
    assert segments == {"dns_failed": "1", "active": "1"}
    # Drawn by the server: no script beyond the page's own, no external asset.
    assert re.findall(r"<script src=\"([^\"]+)\"", page.text) == ["/portal/static/app.js"]
    assert "http://" not in page.text.replace("http://www.w3.org", "")


# ------------------------------------------------------------------ the tenant's deployment


def test_a_tenant_page_says_when_the_stack_does_not_exist_yet(make_api: MakeApi) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    local.service.request(tenant, host_for(tenant), "user:setup")
    client = _signed_in(local, None)
    page = client.get(f"/console/tenants/{tenant}")
    assert page.status_code == 200
    assert 'id="console-stack-note"' in page.text
    assert "stack does not exist yet" in page.text
    # A read creates no stack.
    health = client.get(ENVIRONMENT)
    assert 'data-exists="no"' in health.text


# ------------------------------------------------------------------ RBAC and CSRF


@pytest.mark.parametrize("path", [ENVIRONMENT + "/recover", ENVIRONMENT + "/confirm-deletions"])
def test_tenant_roles_may_not_use_the_environment_page_and_the_refusal_is_audited(
    make_api: MakeApi, path: str
) -> None:
    local = make_api(env=NO_TEMPORAL)
    tenant = uuid.uuid4()
    client = _signed_in(local, tenant, role="tenant_admin", sub="alice")
    assert client.get(ENVIRONMENT).status_code == 403
    answer = client.post(path, data={"csrf_token": "x"})
    assert answer.status_code == 403
    assert "platform operators only" in answer.text
    action = "recover_stack" if path.endswith("recover") else "confirm_deletions"
    denied = [e for e in local.audit(tenant) if e.outcome == "denied" and e.action == action]
    assert [(e.actor, (e.detail or {}).get("code")) for e in denied] == [
        ("user:alice", "forbidden")
    ]
    assert _console_rows(local, PLATFORM_LOG, action) == []


@pytest.mark.parametrize("path", [ENVIRONMENT + "/recover", ENVIRONMENT + "/confirm-deletions"])
def test_an_action_without_the_csrf_token_is_refused_and_audited(
    make_api: MakeApi, path: str
) -> None:
    local = make_api(env=NO_TEMPORAL)
    client = _signed_in(local, None)
    answer = client.post(path, data={"csrf_token": "forged"})
    assert answer.status_code == 403
    action = "recover_stack" if path.endswith("recover") else "confirm_deletions"
    rows = _console_rows(local, PLATFORM_LOG, action)
    assert [(e.outcome, (e.detail or {}).get("code")) for e in rows] == [("denied", "csrf_failed")]


# ------------------------------------------------------------------ held deletions


def test_held_deletions_are_listed_and_confirming_without_temporal_says_so(
    make_api: MakeApi,
) -> None:
    local = make_api(env=NO_TEMPORAL)
    held, other = uuid.uuid4(), uuid.uuid4()
    _held(local.service, held)
    local.service.request(other, host_for(other), "user:setup")
    local.service.disable(other, "user:setup")  # removal requested, not held
    assert [v.tenant_id for v in held_deletions(local.service)] == [held]

    client = _signed_in(local, None)
    page = client.get(ENVIRONMENT)
    assert re.findall(r'<tr data-tenant="([^"]+)">', page.text) == [str(held)]
    answer = client.post(ENVIRONMENT + "/confirm-deletions", data={"csrf_token": _csrf(page.text)})
    assert answer.status_code == 503
    assert "Temporal at 127.0.0.1:1 is unreachable" in answer.text
    assert "nothing was confirmed" in answer.text
    for log in (PLATFORM_LOG, held):
        [row] = _console_rows(local, log, "confirm_deletions")
        assert (row.actor, row.outcome) == ("operator:ops", "rejected")
        assert (row.detail or {})["held_tenants"] == [local.service.get(held).canonical_prefix]
    assert _console_rows(local, other, "confirm_deletions") == []


def test_recover_without_temporal_is_refused_not_guessed(make_api: MakeApi) -> None:
    local = make_api(env=NO_TEMPORAL)
    client = _signed_in(local, None)
    token = _csrf(client.get(ENVIRONMENT).text)
    answer = client.post(ENVIRONMENT + "/recover", data={"csrf_token": token})
    assert answer.status_code == 503
    assert "not recovered" in answer.text
    [row] = _console_rows(local, PLATFORM_LOG, "recover_stack")
    assert (row.actor, row.outcome) == ("operator:ops", "rejected")


# ------------------------------------------------------------------ the real stack


@pytest.mark.pulumi
@pytest.mark.temporal
def test_the_deployed_objects_their_file_and_a_recover_on_the_real_stack(
    make_api: MakeApi, temporal_address: str, tmp_path: Path
) -> None:
    local = make_api(env={"PORTAL_DOMAINS_TEMPORAL_ADDRESS": temporal_address})
    settings = local.app.state.gatekeeper.settings
    tenant, bystander = uuid.uuid4(), uuid.uuid4()
    for t in (tenant, bystander):
        local.service.request(t, host_for(t), "user:setup")
        walk(local.service, t, S.ACTIVE)
    stack = environment_stack(settings, settings.environment)
    stack.up(local.service.load_records())
    prefix = local.service.get(tenant).canonical_prefix

    client = _signed_in(local, None)
    page = client.get(f"/console/tenants/{tenant}")
    assert page.status_code == 200, page.text
    kinds = re.findall(r'<tr data-kind="([^"]+)">', page.text)
    assert sorted(kinds) == ["Certificate", "Gateway", "VirtualService"]
    assert f"{stack.config.manifest_root}/{prefix}.yaml" in page.text
    kube_file = re.search(r'<pre id="console-kube-file">(.*?)</pre>', page.text, re.S)
    assert kube_file is not None
    assert host_for(tenant) in kube_file.group(1)
    assert host_for(bystander) not in kube_file.group(1)

    # A crashed run's lock file: shown, then released by Recover.
    locks = Path(stack.penv.backend_url.removeprefix("file://")) / ".pulumi" / "locks"
    lock = locks / "organization" / "portal-domains" / stack.stack_name / "crashed.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("{}")
    health = client.get(ENVIRONMENT)
    assert 'data-exists="yes"' in health.text
    assert 'data-locks="1"' in health.text
    answer = client.post(
        ENVIRONMENT + "/recover", data={"csrf_token": _csrf(health.text)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    assert not lock.exists()
    after = client.get(answer.headers["location"])
    assert "The stack was recovered." in after.text
    assert 'data-locks="0"' in after.text
    [row] = _console_rows(local, PLATFORM_LOG, "recover_stack")
    assert row.outcome == "ok"
    assert any("lock" in step for step in (row.detail or {})["steps"])
