"""Claims that cannot be squatted: only a verified domain holds its hostname.

Requests merely claim a hostname, and several tenants may claim one; the row
whose DNS is verified holds it (db.models.HOLDING_STATUSES), and a partial
unique index admits one holder. Plus purging a disabled row and expiring
unverified claims. On a migrated SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ErrorKind
from core.status import DomainStatus
from db.models import HOLDING_STATUSES, PortalDomain
from db.service import (
    DomainAction,
    DomainAlreadyClaimed,
    DomainChange,
    DomainNotDisabled,
    DomainNotFound,
    DomainService,
    RemovalInProgress,
)
from db.session import make_session_factory

S = DomainStatus
BASE = "portal.algapsa.com"
HOST = "portal.acme.com"
OWNER = UUID("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f")
SQUATTER = UUID("9a8b7c6d-1111-4222-8333-444455556666")
THIRD = UUID("51c0ffee-2222-4333-8444-555566667777")
OPERATOR = "operator:test"
VERIFIED = (S.VERIFYING_DNS, S.PENDING_CERTIFICATE)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(engine: sa.Engine, changes: list[DomainChange], clock: Clock) -> DomainService:
    return DomainService(
        make_session_factory(engine), base_domain=BASE, on_committed=changes.append, clock=clock
    )


def _walk(service: DomainService, tenant: UUID, *path: DomainStatus) -> None:
    current = service.get(tenant).status
    for target in path:
        service.record_status(tenant, expected_status=current, new_status=target, message=target)
        current = target


def _audit_summary(service: DomainService, tenant: UUID) -> list[tuple[str, str]]:
    return [(entry.action, entry.outcome) for entry in service.audit_log(tenant)]


def _assert_names_no_holder(error: DomainAlreadyClaimed, service: DomainService) -> None:
    holder = service.get(OWNER)
    for hint in (str(OWNER), OWNER.hex, holder.canonical_prefix, holder.canonical_host):
        assert hint not in error.message
        assert hint not in str(error)


# ------------------------------------------------------------------ claiming


def test_two_tenants_may_hold_unverified_claims_on_one_hostname(service: DomainService) -> None:
    owner = service.request(OWNER, HOST, OPERATOR)
    squatter = service.request(SQUATTER, "Portal.ACME.com", "operator:squatter")
    _walk(service, OWNER, S.VERIFYING_DNS)
    _walk(service, SQUATTER, S.VERIFYING_DNS, S.DNS_FAILED)

    assert (owner.domain, squatter.domain) == (HOST, HOST)
    assert {(v.tenant_id, v.status) for v in service.list()} == {
        (OWNER, S.VERIFYING_DNS),
        (SQUATTER, S.DNS_FAILED),
    }
    assert owner.canonical_host != squatter.canonical_host


def test_a_squatters_claim_does_not_block_the_owner(
    service: DomainService, changes: list[DomainChange]
) -> None:
    service.request(SQUATTER, HOST, "operator:squatter")  # first, but can never verify

    view = service.request(OWNER, HOST, OPERATOR)
    _walk(service, OWNER, *VERIFIED, S.CERTIFICATE_ISSUING, S.DEPLOYING, S.ACTIVE)

    assert view.status is S.PENDING_DNS
    assert service.get(OWNER).status is S.ACTIVE
    assert service.get(SQUATTER).status is S.PENDING_DNS
    assert changes[1] == DomainChange(
        tenant_id=OWNER, action=DomainAction.REQUEST, domain=HOST, status=S.PENDING_DNS
    )
    assert _audit_summary(service, OWNER)[0] == ("request", "ok")


@pytest.mark.parametrize("holding", sorted(HOLDING_STATUSES))
def test_once_the_owner_is_verified_other_requests_are_refused_without_naming_it(
    service: DomainService, holding: DomainStatus
) -> None:
    path = {
        S.PENDING_CERTIFICATE: VERIFIED,
        S.CERTIFICATE_ISSUING: (*VERIFIED, S.CERTIFICATE_ISSUING),
        S.CERTIFICATE_FAILED: (*VERIFIED, S.CERTIFICATE_ISSUING, S.CERTIFICATE_FAILED),
        S.DEPLOYING: (*VERIFIED, S.CERTIFICATE_ISSUING, S.DEPLOYING),
        S.ACTIVE: (*VERIFIED, S.CERTIFICATE_ISSUING, S.DEPLOYING, S.ACTIVE),
    }[holding]
    service.request(SQUATTER, HOST, "operator:squatter")
    service.request(OWNER, HOST, OPERATOR)
    _walk(service, OWNER, *path)

    with pytest.raises(DomainAlreadyClaimed) as caught:
        service.request(THIRD, "PORTAL.acme.com", "operator:third")

    assert caught.value.code == "domain_already_claimed"
    assert caught.value.kind is ErrorKind.CONFLICT  # the API's 409
    assert not caught.value.retryable
    _assert_names_no_holder(caught.value, service)
    with pytest.raises(DomainNotFound):
        service.get(THIRD)
    [entry] = service.audit_log(THIRD)
    assert (entry.action, entry.outcome, entry.domain) == ("request", "conflict", HOST)
    assert entry.detail == {"code": "domain_already_claimed"}

    # The squatter's earlier claim stays, but asking for it again is refused too.
    with pytest.raises(DomainAlreadyClaimed):
        service.request(SQUATTER, HOST, "operator:squatter")
    assert service.get(SQUATTER).status is S.PENDING_DNS
    # The holder itself repeating its request is still a no-op.
    assert service.request(OWNER, HOST, OPERATOR).status is holding


def test_a_disabled_row_releases_its_hostname(service: DomainService) -> None:
    service.request(OWNER, HOST, OPERATOR)
    _walk(service, OWNER, *VERIFIED, S.CERTIFICATE_ISSUING, S.DEPLOYING, S.ACTIVE)
    with pytest.raises(DomainAlreadyClaimed):
        service.request(SQUATTER, HOST, "operator:other")

    service.disable(OWNER, OPERATOR)
    other = service.request(SQUATTER, HOST, "operator:other")
    _walk(service, SQUATTER, *VERIFIED)

    assert other.status is S.PENDING_DNS
    assert service.get(SQUATTER).status is S.PENDING_CERTIFICATE
    # Now the former owner is the one refused.
    with pytest.raises(DomainAlreadyClaimed):
        service.request(OWNER, HOST, OPERATOR)
    assert service.get(OWNER).status is S.DISABLED


# ------------------------------------------------------- verifying a held hostname


@pytest.mark.parametrize("with_version", [False, True])
def test_verifying_a_hostname_another_tenant_holds_is_refused_and_changes_nothing(
    service: DomainService, changes: list[DomainChange], with_version: bool
) -> None:
    service.request(OWNER, HOST, OPERATOR)
    service.request(SQUATTER, HOST, "operator:squatter")
    _walk(service, OWNER, S.VERIFYING_DNS)
    _walk(service, SQUATTER, S.VERIFYING_DNS)
    _walk(service, OWNER, S.PENDING_CERTIFICATE)  # the owner verified first
    before = service.get(SQUATTER)
    changes.clear()

    for _ in range(2):  # a retry is refused the same way, not taken as applied
        with pytest.raises(DomainAlreadyClaimed) as caught:
            service.record_status(
                SQUATTER,
                expected_status=S.VERIFYING_DNS,
                new_status=S.PENDING_CERTIFICATE,
                message="DNS verified",
                details={"observed": "whatever"},
                expected_version=before.version if with_version else None,
            )
        _assert_names_no_holder(caught.value, service)
        assert not caught.value.retryable

    assert service.get(SQUATTER) == before
    assert service.get(OWNER).status is S.PENDING_CERTIFICATE
    assert changes == []
    last = service.audit_log(SQUATTER)[-1]
    assert (last.action, last.outcome) == ("record_status", "conflict")
    assert (last.status_before, last.status_after) == (S.VERIFYING_DNS, S.VERIFYING_DNS)
    assert last.detail == {
        "code": "domain_already_claimed",
        "expected_status": "verifying_dns",
        "wanted_status": "pending_certificate",
    }
    # The refused tenant's row is still usable: it can fail, and disable.
    _walk(service, SQUATTER, S.DNS_FAILED)
    assert service.disable(SQUATTER, OPERATOR).status is S.DISABLED


def _orm_set_status(engine: sa.Engine, tenant: UUID, status: DomainStatus) -> None:
    with Session(engine) as session, session.begin():
        row = session.scalars(sa.select(PortalDomain).where(PortalDomain.tenant_id == tenant)).one()
        row.status = status


def test_the_index_rejects_a_second_holder_written_behind_the_services_back(
    service: DomainService, engine: sa.Engine
) -> None:
    service.request(OWNER, HOST, OPERATOR)
    service.request(SQUATTER, HOST, "operator:squatter")
    _walk(service, OWNER, *VERIFIED)

    prefix = service.get(SQUATTER).canonical_prefix

    with pytest.raises(IntegrityError):
        _orm_set_status(engine, SQUATTER, S.ACTIVE)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE portal_domains SET status = 'deploying', domain = 'PORTAL.Acme.COM'"
                " WHERE canonical_prefix = :prefix"
            ),
            {"prefix": prefix},
        )

    assert service.get(SQUATTER).status is S.PENDING_DNS
    assert service.get(SQUATTER).domain == HOST


# --------------------------------------------------------------------- purge


def test_purging_a_disabled_row_deletes_it_and_keeps_the_audit(
    service: DomainService, changes: list[DomainChange]
) -> None:
    service.request(OWNER, HOST, OPERATOR)
    _walk(service, OWNER, *VERIFIED)
    service.disable(OWNER, OPERATOR)
    # Too early while its objects are still being removed ...
    with pytest.raises(RemovalInProgress):
        service.purge(OWNER, "operator:purger")
    # ... and fine once a reconcile removed them.
    service.record_removals(set(), environment="staging", commit=None)
    disabled = service.get(OWNER)
    changes.clear()

    purged = service.purge(OWNER, "operator:purger")

    assert purged == disabled
    with pytest.raises(DomainNotFound):
        service.get(OWNER)
    assert service.list() == []
    assert changes == []  # nothing left for a workflow to reconcile
    log = service.audit_log(OWNER)
    assert [(e.action, e.outcome) for e in log] == [
        ("request", "ok"),
        ("record_status", "ok"),
        ("record_status", "ok"),
        ("disable", "ok"),
        ("purge", "rejected"),
        ("record_status", "ok"),
        ("purge", "ok"),
    ]
    last = log[-1]
    assert (last.outcome, last.actor, last.domain) == ("ok", "operator:purger", HOST)
    assert (last.status_before, last.status_after) == (S.DISABLED, None)
    assert last.detail == {
        "canonical_prefix": disabled.canonical_prefix,
        "canonical_host": disabled.canonical_host,
    }
    # A later request starts afresh.
    again = service.request(OWNER, HOST, OPERATOR)
    assert (again.status, again.version) == (S.PENDING_DNS, 1)
    assert again.id != disabled.id


@pytest.mark.parametrize("walk", [(), (*VERIFIED, S.CERTIFICATE_ISSUING, S.DEPLOYING, S.ACTIVE)])
def test_purging_a_row_that_is_not_disabled_is_refused(
    service: DomainService, walk: tuple[DomainStatus, ...]
) -> None:
    service.request(OWNER, HOST, OPERATOR)
    _walk(service, OWNER, *walk)
    before = service.get(OWNER)

    with pytest.raises(DomainNotDisabled) as caught:
        service.purge(OWNER, OPERATOR)

    assert caught.value.kind is ErrorKind.REFUSED
    assert caught.value.code == "domain_not_disabled"
    assert "disable it first" in caught.value.message
    assert service.get(OWNER) == before
    last = service.audit_log(OWNER)[-1]
    assert (last.action, last.outcome, last.status_after) == ("purge", "rejected", before.status)


def test_purging_a_missing_row_is_not_found_and_audited(service: DomainService) -> None:
    with pytest.raises(DomainNotFound):
        service.purge(OWNER, OPERATOR)
    assert _audit_summary(service, OWNER) == [("purge", "not_found")]


# -------------------------------------------------------------------- expiry


def test_expiry_disables_only_unverified_claims_older_than_the_cutoff(
    service: DomainService, changes: list[DomainChange], clock: Clock
) -> None:
    pending, verifying, failed, fresh, verified, disabled = (
        UUID(int=n) for n in (0x10, 0x20, 0x30, 0x40, 0x50, 0x60)
    )
    for n, tenant in enumerate((pending, verifying, failed, fresh, verified, disabled)):
        service.request(tenant, f"portal{n}.acme.com", OPERATOR)
    _walk(service, verifying, S.VERIFYING_DNS)
    _walk(service, failed, S.VERIFYING_DNS, S.DNS_FAILED)
    _walk(service, verified, *VERIFIED)
    service.disable(disabled, OPERATOR)
    clock.advance(timedelta(days=7))
    service.record_status(  # a write bumps updated_at: the claim is fresh again
        fresh, expected_status=S.PENDING_DNS, new_status=S.PENDING_DNS, message="still waiting"
    )
    clock.advance(timedelta(seconds=1))
    untouched = {t: service.get(t) for t in (fresh, verified, disabled)}
    changes.clear()

    expired = service.expire_unverified_claims(timedelta(days=7))

    assert expired == sorted([pending, verifying, failed])
    for tenant, was in (
        (pending, S.PENDING_DNS),
        (verifying, S.VERIFYING_DNS),
        (failed, S.DNS_FAILED),
    ):
        view = service.get(tenant)
        assert view.status is S.DISABLED
        assert view.updated_at == clock.now
        assert view.status_message.startswith("Expired:")
        assert "7 days" in view.status_message
        last = service.audit_log(tenant)[-1]
        assert (last.action, last.outcome, last.actor) == ("expire", "ok", "reconciler")
        assert (last.status_before, last.status_after) == (was, S.DISABLED)
    assert {t: service.get(t) for t in untouched} == untouched
    assert [(c.tenant_id, c.action, c.status) for c in changes] == [
        (t, DomainAction.DISABLE, S.DISABLED) for t in sorted([pending, verifying, failed])
    ]
    # Idempotent: nothing is left to expire.
    assert service.expire_unverified_claims(timedelta(days=7), actor="operator:cleanup") == []


def test_expiry_cutoff_is_strict_and_must_be_positive(service: DomainService, clock: Clock) -> None:
    service.request(OWNER, HOST, OPERATOR)
    clock.advance(timedelta(hours=36))
    assert service.expire_unverified_claims(timedelta(hours=36)) == []
    clock.advance(timedelta(microseconds=1))
    assert service.expire_unverified_claims(timedelta(hours=36)) == [OWNER]
    assert "36 hours" in service.get(OWNER).status_message
    with pytest.raises(ValueError, match="older_than must be positive"):
        service.expire_unverified_claims(timedelta(0))


def test_an_expired_claim_can_be_requested_again_and_purged(
    service: DomainService, clock: Clock
) -> None:
    service.request(SQUATTER, HOST, "operator:squatter")
    clock.advance(timedelta(days=30))
    assert service.expire_unverified_claims(timedelta(days=7)) == [SQUATTER]

    service.purge(SQUATTER, OPERATOR)

    assert [e.action for e in service.audit_log(SQUATTER)] == ["request", "expire", "purge"]
    assert service.request(SQUATTER, HOST, "operator:squatter").status is S.PENDING_DNS
