"""Per-tenant rate limiting of mutations: the token bucket, and 429s from the running API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from api.ratelimit import TenantRateLimiter
from tests.support.api import (
    ADMIN,
    MEMBER,
    FakeClock,
    RunningApi,
    api_settings,
    error_code,
    running_api,
)
from tests.support.services import create_database

A = uuid.UUID("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f")
B = uuid.UUID("9a8b7c6d-1111-4222-8333-444455556666")


# --------------------------------------------------------------------- bucket


def test_a_tenant_may_burst_the_limit_then_waits_for_a_token() -> None:
    clock = FakeClock()
    limiter = TenantRateLimiter(10, clock=clock)
    assert all(limiter.acquire(A).allowed for _ in range(10))
    refused = limiter.acquire(A)
    assert not refused.allowed
    assert refused.retry_after == 6  # one token every 60/10 s
    clock.advance(5.9)
    assert not limiter.acquire(A).allowed
    clock.advance(0.2)
    assert limiter.acquire(A).allowed
    assert not limiter.acquire(A).allowed


def test_tenants_have_separate_buckets() -> None:
    limiter = TenantRateLimiter(2, clock=FakeClock())
    assert limiter.acquire(A).allowed
    assert limiter.acquire(A).allowed
    assert not limiter.acquire(A).allowed
    assert limiter.acquire(B).allowed


def test_the_bucket_refills_to_its_capacity_and_no_further() -> None:
    clock = FakeClock()
    limiter = TenantRateLimiter(3, clock=clock)
    for _ in range(3):
        limiter.acquire(A)
    clock.advance(3600)
    assert [limiter.acquire(A).allowed for _ in range(4)] == [True, True, True, False]


def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock()
    limiter = TenantRateLimiter(10_000, clock=clock)
    for _ in range(10_000):
        limiter.acquire(A)
    assert limiter.acquire(A).retry_after == 1


def test_a_clock_stepping_back_does_not_drain_or_fill_the_bucket() -> None:
    clock = FakeClock()
    limiter = TenantRateLimiter(2, clock=clock)
    limiter.acquire(A)
    clock.advance(-500)
    assert limiter.acquire(A).allowed
    assert not limiter.acquire(A).allowed


def test_full_buckets_are_pruned_when_many_tenants_have_come_and_gone() -> None:
    clock = FakeClock()
    limiter = TenantRateLimiter(1, clock=clock)
    for _ in range(10_000):
        limiter.acquire(uuid.uuid4())
    clock.advance(120)
    limiter.acquire(A)
    assert len(limiter) == 1


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TenantRateLimiter(0)


# ----------------------------------------------------------- through the API


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def api(
    postgres_admin_url: str,
    temporal_address: str,
    tmp_path_factory: pytest.TempPathFactory,
    clock: FakeClock,
) -> Iterator[RunningApi]:
    database_url = create_database(postgres_admin_url, f"rate_{uuid.uuid4().hex[:12]}")
    with running_api(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=tmp_path_factory.mktemp("rate"),
        api=api_settings(rate_limit=3),
        rate_limiter=TenantRateLimiter(3, clock=clock),
    ) as running:
        yield running


@pytest.mark.postgres
@pytest.mark.temporal
def test_the_fourth_mutation_in_a_minute_is_429_with_retry_after_and_audited(
    api: RunningApi, clock: FakeClock
) -> None:
    tenant = uuid.uuid4()
    headers = api.headers(role=ADMIN, tenant=tenant, sub="eager")
    host = f"portal-{tenant.hex[:8]}.acme.com"
    with api.client() as client:
        statuses = [
            client.post(api.domain_url, json={"domain": host}, headers=headers).status_code,
            client.post(api.domain_url + "/refresh", headers=headers).status_code,
            client.post(api.domain_url, json={"domain": host}, headers=headers).status_code,
        ]
        assert statuses == [201, 200, 200]
        limited = client.post(api.domain_url + "/refresh", headers=headers)
        assert limited.status_code == 429
        assert error_code(limited) == "rate_limited"
        assert limited.headers["retry-after"] == "20"
        # Reads are not limited.
        assert client.get(api.domain_url, headers=headers).status_code == 200
        clock.advance(20)
        assert client.post(api.domain_url + "/refresh", headers=headers).status_code == 200

    last = [e for e in api.audit(tenant) if e.outcome == "denied"]
    assert len(last) == 1
    assert (last[0].action, last[0].actor) == ("refresh", "user:eager")
    assert last[0].detail is not None
    assert str(last[0].detail["reason"]).startswith("rate_limited: ")


@pytest.mark.postgres
@pytest.mark.temporal
def test_one_tenant_hitting_the_limit_does_not_limit_another(api: RunningApi) -> None:
    noisy, quiet = uuid.uuid4(), uuid.uuid4()
    with api.client() as client:
        for _ in range(4):
            client.post(api.domain_url + "/refresh", headers=api.headers(role=ADMIN, tenant=noisy))
        assert (
            client.post(
                api.domain_url + "/refresh", headers=api.headers(role=ADMIN, tenant=noisy)
            ).status_code
            == 429
        )
        response = client.post(
            api.domain_url,
            json={"domain": f"portal-{quiet.hex[:8]}.acme.com"},
            headers=api.headers(role=ADMIN, tenant=quiet),
        )
    assert response.status_code == 201


@pytest.mark.postgres
@pytest.mark.temporal
def test_refused_callers_do_not_use_up_the_tenants_budget(api: RunningApi) -> None:
    tenant = uuid.uuid4()
    with api.client() as client:
        for _ in range(5):
            denied = client.delete(api.domain_url, headers=api.headers(role=MEMBER, tenant=tenant))
            assert denied.status_code == 403
        response = client.post(
            api.domain_url,
            json={"domain": f"portal-{tenant.hex[:8]}.acme.com"},
            headers=api.headers(role=ADMIN, tenant=tenant),
        )
    assert response.status_code == 201
