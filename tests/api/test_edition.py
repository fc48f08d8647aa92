"""The community edition: the default portal host only, every change refused and audited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.support.api import (
    ADMIN,
    MEMBER,
    OPERATOR,
    RunningApi,
    api_settings,
    error_code,
    running_api,
)
from tests.support.services import create_database

pytestmark = [pytest.mark.postgres, pytest.mark.temporal]


@pytest.fixture(scope="module")
def api(
    postgres_admin_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    database_url = create_database(postgres_admin_url, f"ce_{uuid.uuid4().hex[:12]}")
    with running_api(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=tmp_path_factory.mktemp("ce"),
        api=api_settings(edition="community"),
    ) as running:
        yield running


def _workflow_exists(address: str, tenant: uuid.UUID) -> bool:
    async def describe() -> bool:
        client = await Client.connect(address)
        try:
            await client.get_workflow_handle(f"portal-domain-{tenant}").describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    return asyncio.run(describe())


def test_get_returns_only_the_canonical_host(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.get(api.domain_url, headers=api.headers(role=MEMBER, tenant=tenant))
    assert response.status_code == 200
    body = response.json()
    assert body["edition"] == "community"
    assert body["custom_domains"] is False
    assert body["canonical_host"] == f"{tenant.hex[:7]}.portal.algapsa.com"
    assert body["domain"] is None
    assert body["status"] is None
    assert body["status_message"] is None
    assert body["guidance"]["actions"] == []
    assert "Enterprise" in body["guidance"]["next_step"]


def test_an_existing_row_shows_its_assigned_canonical_host_but_not_the_domain(
    api: RunningApi,
) -> None:
    tenant = uuid.uuid4()
    # Left over from an enterprise licence, say.
    api.service.request(tenant, f"portal-{tenant.hex[:8]}.acme.com", "operator:setup")
    with api.client() as client:
        body = client.get(api.domain_url, headers=api.headers(role=ADMIN, tenant=tenant)).json()
    assert body["canonical_host"] == api.service.get(tenant).canonical_host
    assert body["canonical_host_assigned"] is True
    assert body["domain"] is None
    assert body["status"] is None


@pytest.mark.parametrize("role", [ADMIN, OPERATOR])
@pytest.mark.parametrize(
    ("method", "path", "action"),
    [("POST", "", "request"), ("POST", "/refresh", "refresh"), ("DELETE", "", "disable")],
)
def test_mutations_are_refused_with_edition_not_supported_and_audited(
    api: RunningApi, temporal_address: str, role: str, method: str, path: str, action: str
) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.request(
            method,
            api.domain_url + path,
            params={"tenant_id": str(tenant)},
            json={"domain": "portal.acme.com"} if action == "request" else None,
            headers=api.headers(role=role, tenant=tenant, sub="ce-user"),
        )
    assert response.status_code == 403, response.text
    assert error_code(response) == "edition_not_supported"
    assert "Enterprise" in response.json()["error"]["message"]
    (entry,) = api.audit(tenant)
    actor = "operator:ce-user" if role == OPERATOR else "user:ce-user"
    assert (entry.action, entry.outcome, entry.actor) == (action, "denied", actor)
    assert entry.detail is not None
    assert str(entry.detail["reason"]).startswith("edition_not_supported: ")
    assert not _workflow_exists(temporal_address, tenant)


def test_rbac_is_decided_before_the_edition(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        response = client.delete(api.domain_url, headers=api.headers(role=MEMBER, tenant=tenant))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
