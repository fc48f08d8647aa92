"""What cert-manager's objects say about one tenant's certificate, in words a tenant can act on.

Pure: the adapter (adapters.kube) fetches the Certificate and the ACME Orders
and Challenges for the host; this module decides from them whether the
certificate is Ready, still progressing, or failing, and why.

"Failing" is what lets the registration workflow give up quickly instead of
after its one-hour timeout: cert-manager keeps retrying on its own (challenges
with a backoff, a failed issuance after 1 h, 2 h, ... up to 32 h), so a failure
it reports now will not fix itself until the cause is fixed. Progress reports
("Waiting for DNS-01 challenge propagation: ...") are not failures.

Reasons, in the order they are most useful:
1. an Order the ACME server refused (e.g. `rateLimited`, `unauthorized`, `caa`);
2. a Challenge that is invalid/errored, or pending with an error (e.g. "DNS
   update failed: REFUSED" when the tenant's _acme-challenge CNAME is missing);
3. the Certificate's failed issuance (its Issuing condition, last failure time
   and attempt count: cert-manager's backoff);
4. otherwise the Certificate's Ready condition (still progressing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# cert-manager's progress reasons on a pending Challenge start with these.
_PROGRESS_PREFIXES = ("Waiting for", "Successfully")
_RATE_LIMITED = "rateLimited"
# cert-manager retries a failed issuance after 1 h, doubling per failed attempt, at most
# 32 h (its trigger controller's backoff; both are controller flags, these the defaults).
_BACKOFF_START = timedelta(hours=1)
_BACKOFF_MAX = timedelta(hours=32)


@dataclass(frozen=True, kw_only=True)
class CertificateState:
    ready: bool
    reason: str  # cert-manager's reason (Ready condition, or the failing step's)
    message: str
    not_after: str | None = None
    observed_at: str | None = None  # when cert-manager last changed the condition
    # cert-manager reports an error it will not get past without a fix (see module doc).
    failing: bool = False
    # When cert-manager tries again by itself (a failed issuance's backoff), if known.
    retry_after: str | None = None


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The status condition of type `kind`, if the object has one."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(item, Mapping) and item.get("type") == kind:
            return item
    return None


def certificate_progress(
    certificate: Mapping[str, Any] | None,
    *,
    dns_name: str,
    orders: Sequence[Mapping[str, Any]] = (),
    challenges: Sequence[Mapping[str, Any]] = (),
    where: str = "",
) -> CertificateState:
    """cert-manager's view of the certificate for `dns_name` (see the module doc)."""
    if certificate is None:
        return CertificateState(
            ready=False, reason="NotFound", message=f"Certificate {where} is absent".strip()
        )
    status = certificate.get("status") or {}
    ready = condition(certificate, "Ready")
    if ready is not None and ready.get("status") == "True":
        return CertificateState(
            ready=True,
            reason=str(ready.get("reason", "Ready")),
            message=str(ready.get("message", "")),
            not_after=status.get("notAfter"),
            observed_at=ready.get("lastTransitionTime"),
        )
    for found in (_order_problem(orders, dns_name), _challenge_state(challenges, dns_name)):
        if found is not None:
            return found
    issuing = condition(certificate, "Issuing")
    if issuing is not None and issuing.get("status") == "False" and issuing.get("reason"):
        return _failed_issuance(status, issuing)
    if ready is None:
        return CertificateState(
            ready=False, reason="Pending", message="cert-manager has not looked at it yet"
        )
    return CertificateState(
        ready=False,
        reason=str(ready.get("reason", "NotReady")),
        message=str(ready.get("message", "")),
        observed_at=ready.get("lastTransitionTime"),
    )


def _order_problem(orders: Sequence[Mapping[str, Any]], dns_name: str) -> CertificateState | None:
    for item in orders:
        spec, status = item.get("spec") or {}, item.get("status") or {}
        if dns_name not in (spec.get("dnsNames") or []):
            continue
        if status.get("state") not in ("invalid", "errored"):
            continue
        reason = str(status.get("reason", ""))
        if _RATE_LIMITED in reason:
            return CertificateState(
                ready=False,
                reason="RateLimited",
                message=(
                    "the certificate authority's rate limit was reached; cert-manager retries "
                    f"later by itself ({_one_line(reason)})"
                ),
                failing=True,
            )
        return CertificateState(
            ready=False, reason=f"Order {status['state']}", message=reason, failing=True
        )
    return None


def _challenge_state(
    challenges: Sequence[Mapping[str, Any]], dns_name: str
) -> CertificateState | None:
    for item in challenges:
        spec, status = item.get("spec") or {}, item.get("status") or {}
        state = status.get("state")
        if spec.get("dnsName") != dns_name or state == "valid":
            continue
        reason = str(status.get("reason", ""))
        failing = state in ("invalid", "errored") or (
            bool(reason) and not reason.startswith(_PROGRESS_PREFIXES)
        )
        return CertificateState(
            ready=False,
            reason=f"Challenge {state or 'pending'}",
            message=reason,
            failing=failing,
        )
    return None


def _failed_issuance(status: Mapping[str, Any], issuing: Mapping[str, Any]) -> CertificateState:
    attempts = status.get("failedIssuanceAttempts")
    last_failure = status.get("lastFailureTime")
    retry_after = _retry_after(last_failure, attempts)
    when = f"; cert-manager tries again after {retry_after}" if retry_after else ""
    count = f" (attempt {attempts})" if isinstance(attempts, int) else ""
    return CertificateState(
        ready=False,
        reason=str(issuing.get("reason")),
        message=f"{issuing.get('message', '')}{count}{when}",
        observed_at=issuing.get("lastTransitionTime"),
        failing=True,
        retry_after=retry_after,
    )


def _retry_after(last_failure: Any, attempts: Any) -> str | None:
    if not isinstance(last_failure, str) or not isinstance(attempts, int) or attempts < 1:
        return None
    try:
        failed_at = datetime.fromisoformat(last_failure.replace("Z", "+00:00"))
    except ValueError:
        return None
    delay = min(_BACKOFF_START * 2 ** min(attempts - 1, 6), _BACKOFF_MAX)
    retry_at: datetime = failed_at + delay
    return retry_at.isoformat().replace("+00:00", "Z")


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
