"""core.status: the status graph the database and workflows must follow."""

from __future__ import annotations

from collections import deque
from itertools import product

import pytest

from core.status import (
    DEPLOYABLE,
    TRANSITIONS,
    DomainStatus,
    IllegalTransition,
    can_transition,
    check_transition,
)

S = DomainStatus
ALL_PAIRS = list(product(DomainStatus, repeat=2))
LEGAL = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]

HAPPY_PATH = [
    S.PENDING_DNS,
    S.VERIFYING_DNS,
    S.PENDING_CERTIFICATE,
    S.CERTIFICATE_ISSUING,
    S.DEPLOYING,
    S.ACTIVE,
]


def _reachable(start: DomainStatus) -> set[DomainStatus]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in TRANSITIONS[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def test_every_status_has_an_entry_in_the_graph() -> None:
    assert set(TRANSITIONS) == set(DomainStatus)


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=lambda s: str(s))
def test_every_illegal_edge_raises(current: DomainStatus, target: DomainStatus) -> None:
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransition) as caught:
        check_transition(current, target)
    assert (caught.value.current, caught.value.target) == (current, target)
    assert f"{current} -> {target}" in str(caught.value)


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=lambda s: str(s))
def test_every_legal_edge_passes(current: DomainStatus, target: DomainStatus) -> None:
    check_transition(current, target)


def test_no_status_transitions_to_itself() -> None:
    assert all(status not in TRANSITIONS[status] for status in DomainStatus)


@pytest.mark.parametrize("status", [s for s in DomainStatus if s is not S.DISABLED])
def test_disabled_is_reachable_from_every_other_status(status: DomainStatus) -> None:
    check_transition(status, S.DISABLED)


def test_leaving_disabled_requires_a_new_request() -> None:
    assert TRANSITIONS[S.DISABLED] == frozenset({S.PENDING_DNS})


def test_the_happy_path_is_a_chain_of_legal_edges() -> None:
    for current, target in zip(HAPPY_PATH, HAPPY_PATH[1:], strict=False):
        check_transition(current, target)


def test_every_status_is_reachable_from_pending_dns_and_can_get_back() -> None:
    assert _reachable(S.PENDING_DNS) == set(DomainStatus)
    for status in DomainStatus:
        assert S.PENDING_DNS in _reachable(status)


def test_failures_can_be_retried() -> None:
    check_transition(S.DNS_FAILED, S.VERIFYING_DNS)
    check_transition(S.CERTIFICATE_FAILED, S.CERTIFICATE_ISSUING)
    check_transition(S.DNS_FAILED, S.PENDING_DNS)
    check_transition(S.CERTIFICATE_FAILED, S.PENDING_DNS)


def test_deployable_means_dns_verified_and_not_disabled() -> None:
    assert DEPLOYABLE == {
        S.PENDING_CERTIFICATE,
        S.CERTIFICATE_ISSUING,
        S.CERTIFICATE_FAILED,
        S.DEPLOYING,
        S.ACTIVE,
    }
    assert not DEPLOYABLE & {S.PENDING_DNS, S.VERIFYING_DNS, S.DNS_FAILED, S.DISABLED}


def test_status_values_are_the_database_enum_values() -> None:
    assert [s.value for s in DomainStatus] == [
        "pending_dns",
        "verifying_dns",
        "dns_failed",
        "pending_certificate",
        "certificate_issuing",
        "certificate_failed",
        "deploying",
        "active",
        "disabled",
    ]
