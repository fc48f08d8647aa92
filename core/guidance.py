"""What a tenant can do next, for every domain status: actions, next step, DNS record.

The client-portal settings page (and the REST API that serves it) shows, for
the tenant's domain, a banner, the actions it may take, one sentence saying
what happens next or what to fix, and the DNS record to create. This module
decides all of it from the status alone, so the UI, the API and the CLI say
the same thing.

The seed's "Terminal Status UX Matrix" covers active, disabled, dns_failed and
certificate_failed; it is followed and extended to the in-progress statuses
and to "no domain yet", with two deliberate differences:

- The seed offers Refresh on a disabled domain. The service refuses a refresh
  of a disabled domain (there is nothing to re-check; its resources are gone),
  so a disabled domain offers only `request_new_domain` (requesting the same
  hostname again re-enables it).
- The seed shows Remove only "once status is non-pending". A tenant who asked
  for the wrong hostname must be able to withdraw it without replacing it, so
  Remove is offered in every status except disabled.

"Retry Registration" in the matrix is our `refresh` on a failed domain: it
sends the domain back to pending_dns and the workflow starts over.

In an environment that issues by DNS-01 delegation (`acmeSolver: dns01`) the
tenant creates two records, the portal CNAME and `_acme-challenge.<host>` ->
`<prefix>.<our ACME zone>` (`challenge_dns`), and the sentences about issuing
talk about that record instead of the HTTP challenge path.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from core.config import ACME_CHALLENGE_LABEL
from core.status import DomainStatus

S = DomainStatus

DEFAULT_TTL = 3600
# RFC 2606 name: a sample that can never be somebody's real hostname.
SAMPLE_HOSTNAME = "portal.example.com"

Tone = Literal["success", "info", "warning", "error", "neutral"]


class GuidanceAction(StrEnum):
    REFRESH = "refresh"
    REMOVE = "remove"
    REQUEST_NEW_DOMAIN = "request_new_domain"


@dataclass(frozen=True, kw_only=True)
class DnsInstructions:
    """The CNAME record the tenant creates at its DNS provider."""

    name: str
    target: str
    ttl: int
    # True when `name` is SAMPLE_HOSTNAME because no hostname was requested yet.
    sample: bool
    record_type: Literal["CNAME"] = "CNAME"

    @property
    def record(self) -> str:
        """The record in zone-file syntax, fully qualified (trailing dots)."""
        return f"{self.name}. {self.ttl} IN {self.record_type} {self.target}."


@dataclass(frozen=True, kw_only=True)
class Guidance:
    status: DomainStatus | None
    tone: Tone
    title: str
    actions: tuple[GuidanceAction, ...]
    next_step: str
    # Still moving on its own: the UI polls (the seed: every 15 s) until it stops.
    polling: bool
    dns: DnsInstructions
    # DNS-01 delegation only: the second CNAME, through which certificates are issued.
    challenge_dns: DnsInstructions | None
    hints: tuple[str, ...]

    @property
    def records(self) -> tuple[DnsInstructions, ...]:
        """Every record the tenant creates, the portal CNAME first."""
        return (self.dns,) if self.challenge_dns is None else (self.dns, self.challenge_dns)


@dataclass(frozen=True, kw_only=True)
class _Entry:
    tone: Tone
    title: str
    actions: tuple[GuidanceAction, ...]
    next_step: str
    polling: bool


A = GuidanceAction
_IN_PROGRESS = (A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN)
_FAILED = (A.REFRESH, A.REMOVE, A.REQUEST_NEW_DOMAIN)

# Placeholders: {domain} (the vanity hostname), {canonical} (the CNAME target),
# {ttl} (the record's TTL in seconds).
_MATRIX: dict[DomainStatus, _Entry] = {
    S.PENDING_DNS: _Entry(
        tone="info",
        title="Waiting for DNS",
        actions=_IN_PROGRESS,
        next_step=(
            "Create the CNAME record below at your DNS provider so that {domain} points to "
            "{canonical}. Verification starts automatically and is retried while the record "
            "propagates; use Refresh to check again right away."
        ),
        polling=True,
    ),
    S.VERIFYING_DNS: _Entry(
        tone="info",
        title="Verifying DNS",
        actions=_IN_PROGRESS,
        next_step=(
            "We are checking that {domain} is a CNAME to {canonical}. Nothing to do; keep the "
            "record in place. This usually takes a few minutes."
        ),
        polling=True,
    ),
    S.DNS_FAILED: _Entry(
        tone="error",
        title="DNS check failed",
        actions=_FAILED,
        next_step=(
            "Correct the DNS record so that {domain} is a CNAME to {canonical} (remove any A, "
            "AAAA or other CNAME record for the same name), wait for the old record to expire "
            "(up to its TTL, often {ttl} seconds), then use Refresh to retry the registration."
        ),
        polling=False,
    ),
    S.PENDING_CERTIFICATE: _Entry(
        tone="info",
        title="DNS verified",
        actions=_IN_PROGRESS,
        next_step=(
            "DNS is verified; a TLS certificate for {domain} is being requested. Nothing to do; "
            "keep the CNAME record in place."
        ),
        polling=True,
    ),
    S.CERTIFICATE_ISSUING: _Entry(
        tone="info",
        title="Issuing certificate",
        actions=_IN_PROGRESS,
        next_step=(
            "Let's Encrypt is validating {domain} over HTTP (http://{domain}/.well-known/"
            "acme-challenge/). Keep the CNAME record in place and do not put a proxy or CDN in "
            "front of it until the domain is active; this usually takes a few minutes."
        ),
        polling=True,
    ),
    S.CERTIFICATE_FAILED: _Entry(
        tone="error",
        title="Certificate failed",
        actions=_FAILED,
        next_step=(
            "Make sure http://{domain}/.well-known/acme-challenge/ reaches us (the CNAME points "
            "to {canonical}, port 80 is not blocked, no proxy or CDN answers in our place) and "
            "that no CAA record forbids letsencrypt.org, then use Refresh to retry. Let's "
            "Encrypt limits repeated failures, so retry only after fixing the cause; contact "
            "support if it stays blocked."
        ),
        polling=False,
    ),
    S.DEPLOYING: _Entry(
        tone="info",
        title="Deploying",
        actions=_IN_PROGRESS,
        next_step=(
            "The certificate is issued and routing for {domain} is being deployed. Nothing to "
            "do; this usually takes a few minutes."
        ),
        polling=True,
    ),
    S.ACTIVE: _Entry(
        tone="success",
        title="Active",
        actions=(A.REFRESH, A.REMOVE),
        next_step=(
            "Your client portal is live at https://{domain}. Keep the CNAME record pointing to "
            "{canonical}: the domain is re-checked regularly and stops working if it moves."
        ),
        polling=False,
    ),
    S.DISABLED: _Entry(
        tone="neutral",
        title="Custom domain disabled",
        actions=(A.REQUEST_NEW_DOMAIN,),
        next_step=(
            "Custom domain {domain} is disabled; your portal is served at https://{canonical}. "
            "Submit a domain when you are ready (submitting {domain} again re-enables it), or "
            "delete its CNAME record if you no longer need it."
        ),
        polling=False,
    ),
}

# An active domain whose last periodic re-check found the CNAME pointing elsewhere:
# visitors whose resolvers still cache the old answer reach it, but not for long.
_CNAME_LOST = _Entry(
    tone="warning",
    title="CNAME record changed",
    actions=(A.REFRESH, A.REMOVE),
    next_step=(
        "Your client portal at https://{domain} is at risk: at the last check {domain} no "
        "longer points to {canonical}. Restore the CNAME record below at your DNS provider, "
        "then use Refresh to check again; visitors may not reach the portal until you do."
    ),
    polling=False,
)

_NO_DOMAIN = _Entry(
    tone="neutral",
    title="No custom domain",
    actions=(A.REQUEST_NEW_DOMAIN,),
    next_step=(
        "Your portal is served at https://{canonical}. To use your own hostname, submit a "
        "subdomain you control (for example portal.yourcompany.com), then create the CNAME "
        "record we show you."
    ),
    polling=False,
)

_COMMUNITY = _Entry(
    tone="neutral",
    title="Default portal domain",
    actions=(),
    next_step=(
        "Your portal is served at https://{canonical}. Custom domains are available in the "
        "Enterprise edition."
    ),
    polling=False,
)

# DNS-01 delegation: what differs from the matrix above. Extra placeholders:
# {challenge} (the _acme-challenge name) and {challenge_target} (where it points).
_DNS01_NEXT_STEP: dict[DomainStatus, str] = {
    S.PENDING_DNS: (
        "Create both CNAME records below at your DNS provider: {domain} pointing to "
        "{canonical}, and {challenge} pointing to {challenge_target} (it lets us obtain the "
        "certificate before your traffic moves). Verification starts automatically and is "
        "retried while the records propagate; use Refresh to check again right away."
    ),
    S.VERIFYING_DNS: (
        "We are checking that {domain} is a CNAME to {canonical} and {challenge} a CNAME to "
        "{challenge_target}. Nothing to do; keep both records in place."
    ),
    S.DNS_FAILED: (
        "Correct the DNS records so that {domain} is a CNAME to {canonical} and {challenge} a "
        "CNAME to {challenge_target} (remove any other record for those names), wait for the "
        "old records to expire (up to their TTL, often {ttl} seconds), then use Refresh to "
        "retry the registration."
    ),
    S.PENDING_CERTIFICATE: (
        "DNS is verified; a TLS certificate for {domain} is being requested. Nothing to do; "
        "keep both CNAME records in place."
    ),
    S.CERTIFICATE_ISSUING: (
        "Let's Encrypt is validating {domain} through {challenge}, which points into our "
        "zone. Keep both CNAME records in place; this usually takes a few minutes."
    ),
    S.CERTIFICATE_FAILED: (
        "Make sure {challenge} is a CNAME to {challenge_target} (and the only record for that "
        "name) and that no CAA record forbids letsencrypt.org, then use Refresh to retry. "
        "Let's Encrypt limits repeated failures, so retry only after fixing the cause; "
        "contact support if it stays blocked."
    ),
}

_DNS_HINTS = (
    "A CNAME must be the only record for its name, so use a subdomain such as "
    "portal.yourcompany.com: a bare domain (yourcompany.com) cannot be a CNAME.",
    "DNS changes take effect after the old record's TTL expires; some providers add their "
    "own delay.",
    "If your DNS provider offers a proxy (for example an orange-cloud toggle), turn it off "
    "for this record: certificates are issued by us over plain HTTP.",
)

_DNS01_HINTS = (
    *_DNS_HINTS[:2],
    "Keep the _acme-challenge record as long as the custom domain is in use: certificates "
    "are renewed through it every two months.",
)


def guidance_for(
    status: DomainStatus | None,
    *,
    domain: str | None,
    canonical_host: str,
    custom_domains: bool = True,
    ttl: int = DEFAULT_TTL,
    challenge_target: str | None = None,
    cname_lost: bool = False,
) -> Guidance:
    """Guidance for a tenant whose domain is in `status` (None: no domain requested).

    `custom_domains=False` (the community edition) offers no action and only the
    default portal address, whatever the status. `challenge_target`: where the
    `_acme-challenge` CNAME points when the environment issues by DNS-01
    delegation (StackConfig.challenge_delegation), None with HTTP-01. `cname_lost`:
    the last re-check of an active domain found its CNAME wrong
    (core.records.cname_lost), which is a warning, not a green banner.
    """
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    if status is not None and domain is None:
        raise ValueError(f"a domain in status {status} must have a hostname")
    if not custom_domains:
        entry = _COMMUNITY
    elif status is None:
        entry = _NO_DOMAIN
    elif status is S.ACTIVE and cname_lost:
        entry = _CNAME_LOST
    else:
        entry = _MATRIX[status]
    dns = DnsInstructions(
        name=domain or SAMPLE_HOSTNAME,
        target=canonical_host,
        ttl=ttl,
        sample=domain is None,
    )
    challenge = (
        DnsInstructions(
            name=f"{ACME_CHALLENGE_LABEL}.{dns.name}",
            target=challenge_target,
            ttl=ttl,
            sample=dns.sample,
        )
        if challenge_target is not None and custom_domains
        else None
    )
    next_step = entry.next_step
    hints = _DNS_HINTS if custom_domains else ()
    if challenge is not None:
        hints = _DNS01_HINTS
        if status is not None:
            next_step = _DNS01_NEXT_STEP.get(status, next_step)
        elif entry is _NO_DOMAIN:
            next_step = next_step.replace("the CNAME record", "the two CNAME records")
    return Guidance(
        status=status if custom_domains else None,
        tone=entry.tone,
        title=entry.title,
        actions=entry.actions,
        next_step=next_step.format(
            domain=dns.name,
            canonical=canonical_host,
            ttl=ttl,
            challenge=challenge.name if challenge else "",
            challenge_target=challenge.target if challenge else "",
        ),
        polling=entry.polling,
        dns=dns,
        challenge_dns=challenge,
        hints=hints,
    )
