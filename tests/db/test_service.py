"""db.service.DomainService on a migrated SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from core.hostnames import HostnameError
from core.status import DomainStatus, IllegalTransition
from db.service import (
    DomainAction,
    DomainAlreadyClaimed,
    DomainChange,
    DomainDisabled,
    DomainNotFound,
    DomainService,
    HookFailed,
    StaleStatus,
)
from db.session import make_session_factory

S = DomainStatus
BASE = "portal.algapsa.com"
ALICE = UUID("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f")
BOB = UUID("9a8b7c6d-1111-4222-8333-444455556666")
CAROL = UUID("3f2b6c1e-ffff-4000-8000-000000000003")  # same first 7 hex digits as ALICE
OPERATOR = "operator:test"


@pytest.fixture
def service(engine: sa.Engine, changes: list[DomainChange]) -> DomainService:
    return DomainService(
        make_session_factory(engine), base_domain=BASE, on_committed=changes.append
    )


def _walk(service: DomainService, tenant: UUID, *path: DomainStatus) -> None:
    current = service.get(tenant).status
    for target in path:
        service.record_status(tenant, expected_status=current, new_status=target, message=target)
        current = target


def _audit_summary(service: DomainService, tenant: UUID) -> list[tuple[str, str]]:
    return [(entry.action, entry.outcome) for entry in service.audit_log(tenant)]


# ------------------------------------------------------------------------ request


def test_first_request_creates_a_pending_row_with_canonical_names(
    service: DomainService, changes: list[DomainChange]
) -> None:
    view = service.request(ALICE, "Portal.Acme.COM.", OPERATOR)

    assert view.tenant_id == ALICE
    assert view.domain == "portal.acme.com"
    assert view.status is S.PENDING_DNS
    assert view.canonical_prefix == "3f2b6c1"
    assert view.canonical_host == "3f2b6c1.portal.algapsa.com"
    assert view.certificate_secret_name == "portal-domain-3f2b6c1-tls"
    assert dict(view.verification_details) == {"expected_cname": "3f2b6c1.portal.algapsa.com"}
    assert "CNAME" in view.status_message
    assert view.canonical_host in view.status_message
    assert view.version == 1
    assert view.created_at.tzinfo is not None
    assert service.get(ALICE) == view
    assert changes == [
        DomainChange(
            tenant_id=ALICE,
            action=DomainAction.REQUEST,
            domain="portal.acme.com",
            status=S.PENDING_DNS,
        )
    ]
    [entry] = service.audit_log(ALICE)
    assert (entry.action, entry.outcome, entry.actor) == ("request", "ok", OPERATOR)
    assert (entry.status_before, entry.status_after) == (None, S.PENDING_DNS)
    assert entry.domain == "portal.acme.com"


def test_unicode_hostnames_are_stored_as_punycode(service: DomainService) -> None:
    assert service.request(ALICE, "portal.bücher.de", OPERATOR).domain == "portal.xn--bcher-kva.de"


def test_repeating_the_same_request_returns_the_row_unchanged(
    service: DomainService, changes: list[DomainChange]
) -> None:
    first = service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS)
    before = service.get(ALICE)

    again = service.request(ALICE, "PORTAL.acme.com", OPERATOR)

    assert again == before
    assert again.canonical_host == first.canonical_host
    assert _audit_summary(service, ALICE)[-1] == ("request", "noop")
    # At-least-once hook: a repeat lets a caller recover from a lost hook call.
    assert changes[-1].action is DomainAction.REQUEST


def test_a_new_hostname_replaces_the_old_one_and_keeps_the_canonical_names(
    service: DomainService, changes: list[DomainChange]
) -> None:
    first = service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS, S.PENDING_CERTIFICATE, S.CERTIFICATE_ISSUING)
    _walk(service, ALICE, S.DEPLOYING, S.ACTIVE)

    replaced = service.request(ALICE, "clients.acme.com", OPERATOR)

    assert replaced.domain == "clients.acme.com"
    assert replaced.status is S.PENDING_DNS
    assert replaced.last_checked_at is None
    assert "clients.acme.com" in replaced.status_message
    assert (
        replaced.canonical_prefix,
        replaced.canonical_host,
        replaced.certificate_secret_name,
    ) == (
        first.canonical_prefix,
        first.canonical_host,
        first.certificate_secret_name,
    )
    assert replaced.version > first.version
    assert changes[-1] == DomainChange(
        tenant_id=ALICE,
        action=DomainAction.REPLACE,
        domain="clients.acme.com",
        status=S.PENDING_DNS,
    )
    last = service.audit_log(ALICE)[-1]
    assert (last.action, last.status_before, last.status_after) == (
        "replace",
        S.ACTIVE,
        S.PENDING_DNS,
    )
    assert last.detail == {"previous_domain": "portal.acme.com"}
    # The released hostname is free for someone else.
    assert service.request(BOB, "portal.acme.com", OPERATOR).tenant_id == BOB


def test_a_hostname_held_by_another_tenant_is_refused_and_audited(
    service: DomainService, changes: list[DomainChange]
) -> None:
    alice = service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS, S.PENDING_CERTIFICATE)  # verified: Alice holds it
    changes.clear()

    with pytest.raises(DomainAlreadyClaimed) as caught:
        service.request(BOB, "PORTAL.ACME.COM", "operator:bob")

    assert caught.value.code == "domain_already_claimed"
    assert str(ALICE) not in caught.value.message
    assert alice.canonical_prefix not in caught.value.message
    assert changes == []
    with pytest.raises(DomainNotFound):
        service.get(BOB)
    [entry] = service.audit_log(BOB)
    assert (entry.action, entry.outcome, entry.domain) == ("request", "conflict", "portal.acme.com")


def test_a_row_written_in_another_case_still_blocks_the_hostname(
    service: DomainService, engine: sa.Engine
) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS, S.PENDING_CERTIFICATE)
    with engine.begin() as conn:  # some other writer, bypassing normalisation
        conn.execute(sa.text("UPDATE portal_domains SET domain = 'Portal.ACME.com'"))

    with pytest.raises(DomainAlreadyClaimed):
        service.request(BOB, "portal.acme.com", OPERATOR)


def test_an_invalid_hostname_is_refused_audited_and_not_stored(
    service: DomainService, changes: list[DomainChange]
) -> None:
    with pytest.raises(HostnameError) as caught:
        service.request(ALICE, "*.acme.com", OPERATOR)

    assert caught.value.code == "wildcard"
    assert service.list() == []
    assert changes == []
    [entry] = service.audit_log(ALICE)
    assert (entry.outcome, entry.domain) == ("rejected", "*.acme.com")
    assert entry.detail is not None
    assert entry.detail["code"] == "wildcard"


def test_our_own_base_domain_is_refused(service: DomainService) -> None:
    with pytest.raises(HostnameError) as caught:
        service.request(ALICE, "3f2b6c1.portal.algapsa.com", OPERATOR)
    assert caught.value.code == "base_domain"


def test_a_tenant_whose_prefix_is_taken_gets_a_longer_one(service: DomainService) -> None:
    alice = service.request(ALICE, "portal.acme.com", OPERATOR)
    carol = service.request(CAROL, "portal.carol.org", OPERATOR)

    assert alice.canonical_prefix == "3f2b6c1"
    assert carol.canonical_prefix == "3f2b6c1e"
    assert carol.canonical_host == "3f2b6c1e.portal.algapsa.com"
    assert carol.certificate_secret_name == "portal-domain-3f2b6c1e-tls"


# ------------------------------------------------------------ refresh and disable


def test_refreshing_a_failed_domain_sends_it_back_to_pending_dns(
    service: DomainService, changes: list[DomainChange]
) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS, S.DNS_FAILED)

    view = service.refresh(ALICE, OPERATOR)

    assert view.status is S.PENDING_DNS
    assert changes[-1].action is DomainAction.REFRESH
    last = service.audit_log(ALICE)[-1]
    assert (last.action, last.status_before, last.status_after) == (
        "refresh",
        S.DNS_FAILED,
        S.PENDING_DNS,
    )


def test_refreshing_a_domain_in_progress_keeps_its_status_but_runs_the_hook(
    service: DomainService, changes: list[DomainChange]
) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS)
    before = service.get(ALICE)

    view = service.refresh(ALICE, OPERATOR)

    assert view == before
    assert changes[-1] == DomainChange(
        tenant_id=ALICE,
        action=DomainAction.REFRESH,
        domain="portal.acme.com",
        status=S.VERIFYING_DNS,
    )
    assert _audit_summary(service, ALICE)[-1] == ("refresh", "ok")


def test_refreshing_a_disabled_or_missing_domain_is_an_error(service: DomainService) -> None:
    with pytest.raises(DomainNotFound):
        service.refresh(ALICE, OPERATOR)
    service.request(ALICE, "portal.acme.com", OPERATOR)
    service.disable(ALICE, OPERATOR)
    with pytest.raises(DomainDisabled):
        service.refresh(ALICE, OPERATOR)
    assert [o for _, o in _audit_summary(service, ALICE)] == ["not_found", "ok", "ok", "rejected"]


def test_disable_is_allowed_from_any_status_and_is_idempotent(
    service: DomainService, changes: list[DomainChange]
) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS, S.PENDING_CERTIFICATE)

    first = service.disable(ALICE, OPERATOR)
    second = service.disable(ALICE, OPERATOR)

    assert first.status is S.DISABLED
    assert "operator:test" in first.status_message
    assert second == first
    assert [c.action for c in changes[-2:]] == [DomainAction.DISABLE, DomainAction.DISABLE]
    assert _audit_summary(service, ALICE)[-2:] == [("disable", "ok"), ("disable", "noop")]
    with pytest.raises(DomainNotFound):
        service.disable(BOB, OPERATOR)


def test_a_disabled_domain_releases_its_hostname_and_a_new_request_re_enables_it(
    service: DomainService,
) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS, S.PENDING_CERTIFICATE)
    service.disable(ALICE, OPERATOR)
    assert service.request(BOB, "portal.acme.com", OPERATOR).status is S.PENDING_DNS

    view = service.request(ALICE, "portal.acme.com", OPERATOR)

    assert view.status is S.PENDING_DNS
    last = service.audit_log(ALICE)[-1]
    assert (last.action, last.status_before, last.status_after) == (
        "request",
        S.DISABLED,
        S.PENDING_DNS,
    )


# ------------------------------------------------------------------ record_status


def test_record_status_moves_along_the_graph_and_bumps_the_version(
    service: DomainService, changes: list[DomainChange]
) -> None:
    created = service.request(ALICE, "portal.acme.com", OPERATOR)

    view = service.record_status(
        ALICE,
        expected_status=S.PENDING_DNS,
        new_status=S.VERIFYING_DNS,
        message="Looking up the CNAME record.",
        details={"expected_cname": created.canonical_host, "attempts": 1},
        expected_version=created.version,
    )

    assert view.status is S.VERIFYING_DNS
    assert view.version == created.version + 1
    assert view.status_message == "Looking up the CNAME record."
    assert view.verification_details["attempts"] == 1
    assert view.last_checked_at is not None
    assert changes[-1].action is DomainAction.RECORD_STATUS
    last = service.audit_log(ALICE)[-1]
    assert (last.actor, last.status_before, last.status_after, last.outcome) == (
        "reconciler",
        S.PENDING_DNS,
        S.VERIFYING_DNS,
        "ok",
    )


def test_an_illegal_transition_raises_and_writes_nothing(service: DomainService) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    before = service.get(ALICE)
    audit_rows = len(service.audit_log(ALICE))

    with pytest.raises(IllegalTransition):
        service.record_status(
            ALICE, expected_status=S.PENDING_DNS, new_status=S.ACTIVE, message="skip ahead"
        )

    assert service.get(ALICE) == before
    assert len(service.audit_log(ALICE)) == audit_rows


def test_a_write_from_a_status_the_row_has_left_is_a_stale_status_conflict(
    service: DomainService, changes: list[DomainChange]
) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    service.disable(ALICE, OPERATOR)  # the operator got there first
    changes.clear()

    with pytest.raises(StaleStatus) as caught:
        service.record_status(
            ALICE, expected_status=S.PENDING_DNS, new_status=S.VERIFYING_DNS, message="checking"
        )

    assert caught.value.code == "stale_status"
    assert caught.value.actual_status is S.DISABLED
    assert service.get(ALICE).status is S.DISABLED
    assert changes == []
    assert _audit_summary(service, ALICE)[-1] == ("record_status", "conflict")


def test_a_write_against_an_old_version_is_a_conflict(service: DomainService) -> None:
    created = service.request(ALICE, "portal.acme.com", OPERATOR)
    service.request(ALICE, "clients.acme.com", OPERATOR)  # replaced: version moved on

    with pytest.raises(StaleStatus) as caught:
        service.record_status(
            ALICE,
            expected_status=S.PENDING_DNS,
            new_status=S.VERIFYING_DNS,
            message="checking portal.acme.com",
            expected_version=created.version,
        )

    assert caught.value.expected_version == created.version
    assert service.get(ALICE).status is S.PENDING_DNS


def test_retrying_a_transition_that_already_committed_succeeds_without_writing(
    service: DomainService, changes: list[DomainChange]
) -> None:
    created = service.request(ALICE, "portal.acme.com", OPERATOR)
    kwargs = {
        "expected_status": S.PENDING_DNS,
        "new_status": S.VERIFYING_DNS,
        "message": "checking",
        "expected_version": created.version,
    }
    first = service.record_status(ALICE, **kwargs)  # type: ignore[arg-type]
    audit_rows = len(service.audit_log(ALICE))

    retried = service.record_status(ALICE, **kwargs)  # type: ignore[arg-type]

    assert retried == first
    assert len(service.audit_log(ALICE)) == audit_rows
    assert changes[-1] == changes[-2]  # the hook runs again (at-least-once)


def test_a_retry_is_not_mistaken_when_the_version_moved_further(service: DomainService) -> None:
    created = service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS, S.DNS_FAILED, S.VERIFYING_DNS)

    with pytest.raises(StaleStatus):
        service.record_status(
            ALICE,
            expected_status=S.PENDING_DNS,
            new_status=S.VERIFYING_DNS,
            message="old attempt",
            expected_version=created.version,
        )


def test_recording_the_same_status_again_refreshes_the_message_only(
    service: DomainService, changes: list[DomainChange]
) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS)
    before = service.get(ALICE)
    hook_calls = len(changes)

    def poll(message: str) -> None:
        service.record_status(
            ALICE,
            expected_status=S.VERIFYING_DNS,
            new_status=S.VERIFYING_DNS,
            message=message,
            expected_version=before.version,
        )

    poll("CNAME not found yet (attempt 2).")
    poll("CNAME not found yet (attempt 2).")
    after = service.get(ALICE)

    assert after.status is S.VERIFYING_DNS
    assert after.version == before.version
    assert after.status_message == "CNAME not found yet (attempt 2)."
    assert after.last_checked_at is not None
    assert before.last_checked_at is not None
    assert after.last_checked_at >= before.last_checked_at
    assert len(changes) == hook_calls
    # One audit row for the message change, none for the identical repeat.
    assert _audit_summary(service, ALICE)[-2:] == [("record_status", "ok"), ("record_status", "ok")]
    assert len([a for a, _ in _audit_summary(service, ALICE) if a == "record_status"]) == 2


def test_recording_a_status_for_a_tenant_without_a_domain_is_not_found(
    service: DomainService,
) -> None:
    with pytest.raises(DomainNotFound):
        service.record_status(
            ALICE, expected_status=S.PENDING_DNS, new_status=S.VERIFYING_DNS, message="x"
        )
    assert _audit_summary(service, ALICE) == [("record_status", "not_found")]


# --------------------------------------------------------------------------- reads


def test_list_and_load_records_are_sorted_by_tenant_and_filtered(service: DomainService) -> None:
    service.request(BOB, "portal.bob.net", OPERATOR)
    service.request(CAROL, "portal.carol.org", OPERATOR)
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, BOB, S.VERIFYING_DNS, S.PENDING_CERTIFICATE)
    _walk(service, ALICE, S.VERIFYING_DNS, S.PENDING_CERTIFICATE, S.CERTIFICATE_ISSUING)
    _walk(service, ALICE, S.DEPLOYING, S.ACTIVE)

    assert [v.tenant_id for v in service.list()] == sorted([ALICE, BOB, CAROL], key=str)
    assert [v.tenant_id for v in service.list(S.PENDING_DNS)] == [CAROL]

    records = service.load_records()
    assert [(r.tenant_id, r.status) for r in records] == [
        (str(ALICE), S.ACTIVE),
        (str(BOB), S.PENDING_CERTIFICATE),
    ]
    # CAROL asked first and holds 3f2b6c1, so ALICE got one more digit.
    assert records[0].prefix == "3f2b6c1e"
    assert records[0].canonical_host == "3f2b6c1e.portal.algapsa.com"
    assert records[0].certificate_secret_name == "portal-domain-3f2b6c1e-tls"
    assert all(r.deployable for r in records)
    assert [r.tenant_id for r in service.load_records({S.PENDING_DNS})] == [str(CAROL)]
    assert service.load_records(()) == []


def test_get_of_an_unknown_tenant_is_domain_not_found(service: DomainService) -> None:
    with pytest.raises(DomainNotFound) as caught:
        service.get(ALICE)
    assert caught.value.code == "domain_not_found"


def test_views_are_frozen_snapshots(service: DomainService) -> None:
    view = service.request(ALICE, "portal.acme.com", OPERATOR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.domain = "other.acme.com"  # type: ignore[misc]
    with pytest.raises(TypeError):
        view.verification_details["expected_cname"] = "x"  # type: ignore[index]
    assert view.to_json()["status"] == "pending_dns"


# --------------------------------------------------------------------------- hooks


def test_the_hook_runs_after_commit_and_sees_the_committed_row(engine: sa.Engine) -> None:
    factory = make_session_factory(engine)
    seen: list[DomainStatus] = []
    reader = DomainService(factory, base_domain=BASE)

    def hook(change: DomainChange) -> None:
        # A separate session: only committed data is visible here.
        seen.append(reader.get(change.tenant_id).status)

    DomainService(factory, base_domain=BASE, on_committed=hook).request(
        ALICE, "portal.acme.com", OPERATOR
    )
    assert seen == [S.PENDING_DNS]


def test_a_failing_hook_keeps_the_change_and_a_retry_runs_it_again(engine: sa.Engine) -> None:
    factory = make_session_factory(engine)
    calls: list[DomainChange] = []

    def flaky(change: DomainChange) -> None:
        calls.append(change)
        if len(calls) == 1:
            raise ConnectionError("temporal unreachable")

    service = DomainService(factory, base_domain=BASE, on_committed=flaky)
    with pytest.raises(HookFailed, match="is saved") as caught:
        service.request(ALICE, "portal.acme.com", OPERATOR)
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert service.get(ALICE).status is S.PENDING_DNS

    service.request(ALICE, "portal.acme.com", OPERATOR)
    assert len(calls) == 2


def test_an_empty_actor_is_refused(service: DomainService) -> None:
    with pytest.raises(ValueError, match="actor"):
        service.request(ALICE, "portal.acme.com", " ")


def test_synced_versions_are_stored_per_prefix_without_an_audit_row(
    service: DomainService, changes: list[DomainChange]
) -> None:
    tenant = uuid4()
    view = service.request(tenant, "portal.acme.com", "operator:test")
    audit_before = len(service.audit_log(tenant))
    changes.clear()
    text = "Certificate=812/1,Gateway=813/1,VirtualService=814/2"
    assert service.record_synced_versions({view.canonical_prefix: text, "0000000": "x"}) == 1
    after = service.get(tenant)
    assert after.last_synced_resource_version == text
    assert after.version == view.version  # bookkeeping, not a transition
    assert len(service.audit_log(tenant)) == audit_before
    assert changes == []  # no workflow is signalled for it


def test_with_dns01_delegation_the_first_message_names_both_records(engine: sa.Engine) -> None:
    delegated = DomainService(
        make_session_factory(engine), base_domain=BASE, challenge_zone="acme.portal.example.net"
    )
    view = delegated.request(ALICE, "portal.acme.com", OPERATOR)
    assert view.status_message is not None
    assert f"portal.acme.com -> {view.canonical_host}" in view.status_message
    assert (
        f"_acme-challenge.portal.acme.com -> {view.canonical_prefix}.acme.portal.example.net"
        in view.status_message
    )
    # A failed domain sent back to pending_dns by Refresh says the same.
    _walk(delegated, ALICE, DomainStatus.VERIFYING_DNS, DomainStatus.DNS_FAILED)
    refreshed = delegated.refresh(ALICE, OPERATOR)
    assert "_acme-challenge.portal.acme.com" in (refreshed.status_message or "")


def test_without_delegation_the_first_message_names_one_record(service: DomainService) -> None:
    view = service.request(ALICE, "portal.acme.com", OPERATOR)
    assert "_acme-challenge" not in (view.status_message or "")


def test_a_disable_is_a_removal_request_until_a_reconcile_shows_the_objects_gone(
    service: DomainService,
) -> None:
    view = service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, DomainStatus.VERIFYING_DNS, DomainStatus.PENDING_CERTIFICATE)
    disabled = service.disable(ALICE, OPERATOR)
    assert disabled.verification_details["removal"] == "requested"
    assert (disabled.status_message or "").startswith("Removal requested by operator:test")

    # The stack still holds it (e.g. a held deletion): still only requested.
    assert service.record_removals({view.canonical_prefix}, environment="prod", commit=None) == []
    assert service.get(ALICE).verification_details["removal"] == "requested"

    removed = service.record_removals(set(), environment="prod", commit="0123456789abcdef")
    assert removed == [ALICE]
    after = service.get(ALICE)
    assert after.status is DomainStatus.DISABLED
    assert after.verification_details["removal"] == "removed"
    assert (after.status_message or "").startswith("Removed: portal.acme.com is no longer served")
    assert "0123456789ab" in (after.status_message or "")
    # Idempotent: a later reconcile writes nothing more.
    assert service.record_removals(set(), environment="prod", commit=None) == []
    assert ("record_status", "ok") in _audit_summary(service, ALICE)


# ------------------------------------------------------------ verification details


def _check(observed: str, ok: bool, checked_at: str) -> dict[str, object]:
    return {
        "expected": "3f2b6c1.portal.algapsa.com",
        "observed": observed,
        "ttl": 300,
        "checked_at": checked_at,
        "ok": ok,
    }


def test_details_are_merged_per_part_so_one_failing_check_keeps_the_others(
    service: DomainService,
) -> None:
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS)

    def record(details: dict[str, object]) -> None:
        service.record_status(
            ALICE,
            expected_status=S.VERIFYING_DNS,
            new_status=S.VERIFYING_DNS,
            message="checking",
            details=details,
        )

    record({"cname": _check("3f2b6c1.portal.algapsa.com", True, "2026-01-01T00:00:00+00:00")})
    record({"caa": {"ok": True, "message": "no CAA records"}})
    record({"cname": _check("elsewhere.example.net", False, "2026-01-01T00:01:00+00:00")})

    details = service.get(ALICE).verification_details
    assert details["expected_cname"] == "3f2b6c1.portal.algapsa.com"
    assert details["caa"] == {"ok": True, "message": "no CAA records"}
    assert details["cname"]["observed"] == "elsewhere.example.net"
    assert details["cname"]["ok"] is False


def test_a_repeated_check_refreshes_last_checked_at_but_audits_only_what_changed(
    engine: sa.Engine,
) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    service = DomainService(make_session_factory(engine), base_domain=BASE, clock=lambda: now[0])
    service.request(ALICE, "portal.acme.com", OPERATOR)
    _walk(service, ALICE, S.VERIFYING_DNS)
    audit_rows = len(service.audit_log(ALICE))

    for _ in range(3):
        now[0] += timedelta(minutes=1)
        service.record_status(
            ALICE,
            expected_status=S.VERIFYING_DNS,
            new_status=S.VERIFYING_DNS,
            message="checking",
            details={"cname": _check("x.example.net", False, now[0].isoformat())},
        )
        assert service.get(ALICE).last_checked_at == now[0]
        assert service.get(ALICE).verification_details["cname"]["checked_at"] == (
            now[0].isoformat()
        )

    # The first check changed the details; the two identical ones only their time.
    assert len(service.audit_log(ALICE)) == audit_rows + 1


def test_the_request_time_of_the_current_hostname_is_kept(engine: sa.Engine) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    service = DomainService(make_session_factory(engine), base_domain=BASE, clock=lambda: now[0])
    requested = now[0]
    assert service.request(ALICE, "portal.acme.com", OPERATOR).requested_at == requested

    now[0] += timedelta(minutes=5)
    _walk(service, ALICE, S.VERIFYING_DNS, S.PENDING_CERTIFICATE)
    now[0] += timedelta(minutes=5)
    view = service.get(ALICE)
    assert view.requested_at == requested
    assert view.verification_details["requested_at"] == requested.isoformat()

    # A replacement is a new request: time_to_active counts from here.
    now[0] += timedelta(hours=2)
    replaced_at = now[0]
    assert service.request(ALICE, "clients.acme.com", OPERATOR).requested_at == replaced_at
    now[0] += timedelta(minutes=1)
    _walk(service, ALICE, S.VERIFYING_DNS)
    assert service.get(ALICE).requested_at == replaced_at
    assert service.get(ALICE).verification_details["requested_at"] == replaced_at.isoformat()
