"""The domain status machine: which status may follow which.

pending_dns -> verifying_dns -> (dns_failed | pending_certificate)
  -> certificate_issuing -> (certificate_failed | deploying) -> active,
and disabled from anywhere. Retries re-enter the graph along explicit edges
(a refresh after a failure starts verification again). An illegal transition
is a bug and raises; it is never written.
"""

from __future__ import annotations

from enum import StrEnum

from core.errors import ErrorKind, PortalDomainsError


class DomainStatus(StrEnum):
    PENDING_DNS = "pending_dns"
    VERIFYING_DNS = "verifying_dns"
    DNS_FAILED = "dns_failed"
    PENDING_CERTIFICATE = "pending_certificate"
    CERTIFICATE_ISSUING = "certificate_issuing"
    CERTIFICATE_FAILED = "certificate_failed"
    DEPLOYING = "deploying"
    ACTIVE = "active"
    DISABLED = "disabled"


S = DomainStatus

# Forward edges of the happy path and its failures, plus the re-check edges a
# refresh or a watcher needs. DISABLED is reachable from every status and is
# added below; leaving DISABLED requires a new request (-> PENDING_DNS).
_EDGES: dict[DomainStatus, frozenset[DomainStatus]] = {
    S.PENDING_DNS: frozenset({S.VERIFYING_DNS}),
    S.VERIFYING_DNS: frozenset({S.DNS_FAILED, S.PENDING_CERTIFICATE}),
    S.DNS_FAILED: frozenset({S.VERIFYING_DNS, S.PENDING_DNS}),
    S.PENDING_CERTIFICATE: frozenset({S.CERTIFICATE_ISSUING, S.VERIFYING_DNS, S.PENDING_DNS}),
    S.CERTIFICATE_ISSUING: frozenset(
        {S.CERTIFICATE_FAILED, S.DEPLOYING, S.VERIFYING_DNS, S.PENDING_DNS}
    ),
    S.CERTIFICATE_FAILED: frozenset({S.CERTIFICATE_ISSUING, S.VERIFYING_DNS, S.PENDING_DNS}),
    S.DEPLOYING: frozenset({S.ACTIVE, S.CERTIFICATE_FAILED, S.VERIFYING_DNS, S.PENDING_DNS}),
    # An active domain is re-checked periodically; losing its CNAME sends it
    # back to verification (and to dns_failed if it stays lost).
    S.ACTIVE: frozenset({S.VERIFYING_DNS, S.DNS_FAILED, S.PENDING_DNS}),
    S.DISABLED: frozenset({S.PENDING_DNS}),
}

TRANSITIONS: dict[DomainStatus, frozenset[DomainStatus]] = {
    status: targets | ({S.DISABLED} if status is not S.DISABLED else frozenset())
    for status, targets in _EDGES.items()
}

# Statuses whose DNS has been verified and which are not disabled: exactly the
# domains that must have a Certificate, Gateway and VirtualService.
DEPLOYABLE: frozenset[DomainStatus] = frozenset(
    {
        S.PENDING_CERTIFICATE,
        S.CERTIFICATE_ISSUING,
        S.CERTIFICATE_FAILED,
        S.DEPLOYING,
        S.ACTIVE,
    }
)


class IllegalTransition(PortalDomainsError, ValueError):
    """A status write off the graph: a bug in the caller, never retried."""

    code = "illegal_transition"
    kind = ErrorKind.CONFLICT

    def __init__(self, current: DomainStatus, target: DomainStatus) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        super().__init__(
            f"illegal status transition {current} -> {target} (from {current} allowed: {allowed})"
        )
        self.current = current
        self.target = target


def can_transition(current: DomainStatus, target: DomainStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: DomainStatus, target: DomainStatus) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(current, target)
