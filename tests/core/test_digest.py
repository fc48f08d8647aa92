"""core.digest: equal desired state → equal digest; anything the stack depends on changes it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from core.config import parse_stack_config
from core.digest import RecordedRun, desired_digest, skip_reason
from core.records import DomainRecord
from core.status import DomainStatus

CONFIG = parse_stack_config({}, environment="staging")
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _record(prefix: str, domain: str, status: DomainStatus = DomainStatus.ACTIVE) -> DomainRecord:
    return DomainRecord(
        tenant_id=f"00000000-0000-4000-8000-{prefix:0>12}",
        domain=domain,
        prefix=prefix,
        canonical_host=f"{prefix}.portal.algapsa.com",
        certificate_secret_name=f"portal-domain-{prefix}-tls",
        status=status,
    )


A = _record("aaaaaaa", "portal.acme.com")
B = _record("bbbbbbb", "clients.globex.io")


def test_the_same_desired_state_in_any_order_gives_the_same_digest() -> None:
    assert desired_digest([A, B], CONFIG, "c1") == desired_digest([B, A], CONFIG, "c1")


def test_a_row_that_is_not_deployable_does_not_change_the_digest() -> None:
    pending = _record("ccccccc", "portal.initech.com", DomainStatus.PENDING_DNS)
    assert desired_digest([A, pending], CONFIG, "c1") == desired_digest([A], CONFIG, "c1")


def test_a_new_domain_a_changed_hostname_the_config_or_the_code_change_it() -> None:
    base = desired_digest([A], CONFIG, "c1")
    moved = dataclasses.replace(A, domain="portal.acme.org")
    other_config = parse_stack_config({"gatewayNamespace": "other-gateways"}, environment="staging")
    assert desired_digest([A, B], CONFIG, "c1") != base
    assert desired_digest([moved], CONFIG, "c1") != base
    assert desired_digest([A], other_config, "c1") != base
    assert desired_digest([A], CONFIG, "c2") != base


def test_skipping_needs_an_equal_digest_and_a_recent_full_pass() -> None:
    digest = desired_digest([A], CONFIG, "c1")
    recent = RecordedRun(digest=digest, full_pass_at=NOW - timedelta(minutes=10))
    assert skip_reason(recent, digest, now=NOW, full_pass_every=HOUR) is not None
    assert skip_reason(None, digest, now=NOW, full_pass_every=HOUR) is None
    assert skip_reason(recent, "0" * 64, now=NOW, full_pass_every=HOUR) is None
    stale = RecordedRun(digest=digest, full_pass_at=NOW - HOUR)
    assert skip_reason(stale, digest, now=NOW, full_pass_every=HOUR) is None


def test_a_malformed_record_means_run_the_engine() -> None:
    good = RecordedRun(digest="a" * 64, full_pass_at=NOW)
    assert RecordedRun.from_json(good.to_json()) == good
    bad: object
    for bad in (
        None,
        [],
        {"digest": "short", "full_pass_at": NOW.isoformat()},
        {"digest": "a" * 64, "full_pass_at": "yesterday"},
        {"digest": "a" * 64, "full_pass_at": "2026-12-02T12:00:00"},
    ):
        assert RecordedRun.from_json(bad) is None
