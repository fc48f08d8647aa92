"""core.records: the parts of verification_details and how a check's part is merged."""

from __future__ import annotations

import pytest

from core.records import (
    CAA_CHECK,
    CNAME_CHECK,
    cname_lost,
    merge_details,
    without_check_times,
)
from core.status import DomainStatus

S = DomainStatus
OK_CNAME = {"expected": "abc.portal.algapsa.com", "observed": "abc.portal.algapsa.com", "ok": True}


def test_a_failing_check_replaces_only_its_own_part() -> None:
    current = {
        "expected_cname": "abc.portal.algapsa.com",
        CNAME_CHECK: OK_CNAME,
        CAA_CHECK: {"ok": True, "message": "no CAA records"},
        "removal": "requested",
    }
    failed = {"expected": "abc.portal.algapsa.com", "observed": None, "ok": False}

    merged = merge_details(current, {CNAME_CHECK: failed})

    assert merged == {**current, CNAME_CHECK: failed}
    assert current[CNAME_CHECK] is OK_CNAME  # the input is not changed


def test_check_times_and_ttls_are_not_significant_changes() -> None:
    first = {CNAME_CHECK: {**OK_CNAME, "ttl": 300, "checked_at": "2026-01-01T00:00:00+00:00"}}
    later = {CNAME_CHECK: {**OK_CNAME, "ttl": 120, "checked_at": "2026-01-01T01:00:00+00:00"}}
    moved = {CNAME_CHECK: {**OK_CNAME, "observed": "elsewhere.example.net", "ok": False}}

    assert without_check_times(first) == without_check_times(later)
    assert without_check_times(first) != without_check_times(moved)


@pytest.mark.parametrize(
    ("status", "details", "lost"),
    [
        (S.ACTIVE, {CNAME_CHECK: {**OK_CNAME, "ok": False}}, True),
        (S.ACTIVE, {CNAME_CHECK: OK_CNAME}, False),
        (S.ACTIVE, {}, False),
        (S.ACTIVE, {CNAME_CHECK: "garbage"}, False),
        (S.VERIFYING_DNS, {CNAME_CHECK: {**OK_CNAME, "ok": False}}, False),
    ],
)
def test_a_cname_is_lost_when_an_active_domains_last_check_failed(
    status: DomainStatus, details: dict[str, object], lost: bool
) -> None:
    assert cname_lost(status, details) is lost
