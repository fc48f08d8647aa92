"""core.certificates: cert-manager's objects -> ready, progressing or failing, and why."""

from __future__ import annotations

from typing import Any

import pytest

from core.certificates import certificate_progress

HOST = "portal.acme.test"


def cert(*conditions: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {"status": {"conditions": list(conditions), **status}}


def ready(value: str, reason: str = "Ready", message: str = "") -> dict[str, Any]:
    return {"type": "Ready", "status": value, "reason": reason, "message": message}


def challenge(state: str | None, reason: str = "", host: str = HOST) -> dict[str, Any]:
    status: dict[str, Any] = {"reason": reason}
    if state is not None:
        status["state"] = state
    return {"spec": {"dnsName": host}, "status": status}


def order(state: str, reason: str, hosts: tuple[str, ...] = (HOST,)) -> dict[str, Any]:
    return {"spec": {"dnsNames": list(hosts)}, "status": {"state": state, "reason": reason}}


def test_a_ready_certificate_is_ready_with_its_expiry() -> None:
    state = certificate_progress(
        cert(ready("True"), notAfter="2027-03-01T10:00:00Z"), dns_name=HOST
    )
    assert state.ready
    assert not state.failing
    assert state.not_after == "2027-03-01T10:00:00Z"


def test_an_absent_certificate_is_not_found_and_not_failing() -> None:
    state = certificate_progress(None, dns_name=HOST, where="istio-system/x")
    assert (state.ready, state.reason, state.failing) == (False, "NotFound", False)
    assert "istio-system/x" in state.message


@pytest.mark.parametrize(
    "reason",
    [
        'Waiting for DNS-01 challenge propagation: DNS record for "portal.acme.test" not yet '
        "propagated",
        "Waiting for HTTP-01 challenge propagation: failed to perform self check GET request",
        "",
    ],
)
def test_a_challenge_making_progress_is_not_failing(reason: str) -> None:
    state = certificate_progress(
        cert(ready("False", "Issuing")), dns_name=HOST, challenges=[challenge("pending", reason)]
    )
    assert not state.failing
    assert state.reason == "Challenge pending"


def test_a_challenge_cert_manager_cannot_present_is_failing_with_its_reason() -> None:
    # What cert-manager reports when the tenant's _acme-challenge CNAME is missing.
    state = certificate_progress(
        cert(ready("False", "Issuing")),
        dns_name=HOST,
        challenges=[challenge("pending", "DNS update failed: REFUSED")],
    )
    assert state.failing
    assert state.message == "DNS update failed: REFUSED"


@pytest.mark.parametrize("final", ["invalid", "errored"])
def test_an_invalid_challenge_is_failing(final: str) -> None:
    state = certificate_progress(
        cert(ready("False")), dns_name=HOST, challenges=[challenge(final, "unauthorized")]
    )
    assert state.failing
    assert state.reason == f"Challenge {final}"


def test_challenges_and_orders_of_other_hosts_are_ignored() -> None:
    state = certificate_progress(
        cert(ready("False", "Issuing", "Issuing certificate as Secret does not exist")),
        dns_name=HOST,
        challenges=[challenge("pending", "DNS update failed: REFUSED", host="other.test")],
        orders=[order("invalid", "urn:ietf:params:acme:error:caa", hosts=("other.test",))],
    )
    assert not state.failing
    assert state.reason == "Issuing"


def test_a_rate_limited_order_says_so_in_words() -> None:
    state = certificate_progress(
        cert(ready("False")),
        dns_name=HOST,
        orders=[
            order(
                "errored",
                "429 urn:ietf:params:acme:error:rateLimited: too many certificates (5) "
                "already issued for this exact set of domains in the last 168h0m0s",
            )
        ],
    )
    assert state.failing
    assert state.reason == "RateLimited"
    assert "rate limit" in state.message
    assert "too many certificates" in state.message


def test_a_failed_issuance_reports_cert_managers_backoff() -> None:
    issuing = {
        "type": "Issuing",
        "status": "False",
        "reason": "Failed",
        "message": "The certificate request has failed to complete and will be retried",
    }
    state = certificate_progress(
        cert(
            ready("False", "Failed"),
            issuing,
            lastFailureTime="2026-12-02T10:00:00Z",
            failedIssuanceAttempts=3,
        ),
        dns_name=HOST,
    )
    assert state.failing
    # 1 h, 2 h, 4 h: the third failure waits four hours.
    assert state.retry_after == "2026-12-02T14:00:00Z"
    assert "(attempt 3)" in state.message
    assert "tries again after 2026-12-02T14:00:00Z" in state.message


def test_the_backoff_stops_growing_at_32_hours() -> None:
    issuing = {"type": "Issuing", "status": "False", "reason": "Failed", "message": "failed"}
    state = certificate_progress(
        cert(issuing, lastFailureTime="2026-12-02T00:00:00Z", failedIssuanceAttempts=40),
        dns_name=HOST,
    )
    assert state.retry_after == "2026-12-03T08:00:00Z"
