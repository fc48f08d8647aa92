"""What the settings page shows for a status answer: the design's status matrix, per status.

The seed's "Terminal Status UX Matrix", followed status by status (texts and
actions come from core.guidance through the API's own status answer, so the
page and the API say the same thing):

- active: success banner with the vanity and canonical host, an "Active"
  badge and the last verified time; Refresh, Remove.
- active whose CNAME moved: a warning banner saying where it points now;
  Refresh, Remove.
- disabled: neutral banner, the custom domain is disabled and the default
  host in use; Submit new domain.
- dns_failed: error banner with the last resolved target and the suggested
  TTL wait; Retry registration, Remove, Submit new domain.
- certificate_failed: error banner with cert-manager's reason and its time;
  Retry registration, Remove, Submit new domain.
- pending_dns to deploying: info banner, the page polls every 15 s; Refresh,
  Remove, Submit new domain.

Two differences, both from core.guidance: a disabled domain offers no Refresh
(the service refuses it; submitting the hostname again re-enables it), and
"Retry registration" is the refresh of a failed domain (it starts over), so
the refresh button carries that label in the failed statuses.

Reason codes of refusals are mapped to sentences here (`error_sentence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from api.models import DomainStatusResponse
from core.guidance import DEFAULT_TTL, GuidanceAction
from core.status import DomainStatus

S = DomainStatus

BADGES: dict[str, str] = {
    S.PENDING_DNS: "Pending DNS",
    S.VERIFYING_DNS: "Verifying DNS",
    S.DNS_FAILED: "DNS failed",
    S.PENDING_CERTIFICATE: "Pending certificate",
    S.CERTIFICATE_ISSUING: "Issuing certificate",
    S.CERTIFICATE_FAILED: "Certificate failed",
    S.DEPLOYING: "Deploying",
    S.ACTIVE: "Active",
    S.DISABLED: "Disabled",
    "cname_lost": "CNAME changed",
    "none": "No custom domain",
    "community": "Enterprise feature",
}
_FAILED = frozenset({S.DNS_FAILED, S.CERTIFICATE_FAILED})
_REMOVAL = {
    "requested": "Its certificate and routing are being removed.",
    "held": "Its removal waits for a platform operator to confirm it.",
    "removed": "Its certificate and routing have been removed.",
}

# Notices after a successful action (the ?notice= code of the redirect), fixed texts.
NOTICES: dict[str, str] = {
    "requested": "Domain submitted. Create the DNS record below; we check it automatically.",
    "unchanged": "That domain is already requested; nothing changed.",
    "refreshed": "Check started. The status below updates on its own.",
    "retried": "Registration restarted. The status below updates on its own.",
    "removed": "Custom domain removed. Your portal is served on its default address.",
}

# Reason codes (the API's error codes) as sentences for people.
_SENTENCES: dict[str, str] = {
    "forbidden": "You can view this setting, but only a tenant administrator can change it.",
    "edition_not_supported": "Custom domains need the Enterprise edition.",
    "rate_limited": "Too many changes in a short time. Wait a minute and try again.",
    "csrf_failed": "This form has expired. Reload the page and try again.",
    "session_expired": "Your session has ended. Open this page from the application again.",
    "domain_already_claimed": "Another organisation already uses this domain.",
    "domain_not_found": "There is no custom domain to change yet. Submit one first.",
    "domain_disabled": "The custom domain is disabled. Submit it again to re-enable it.",
    "concurrent_update": "The domain was changed at the same moment. Try again.",
    "hook_failed": "Your change is saved, but processing could not start. Try again shortly.",
    "removal_in_progress": "The previous domain is still being removed. Try again shortly.",
    "invalid_body": "Enter a hostname such as portal.yourcompany.com.",
    "empty": "Enter a hostname such as portal.yourcompany.com.",
    "too_long": "That hostname is too long.",
    "label_too_long": "A part of that hostname is longer than 63 characters.",
    "empty_label": "That hostname has an empty part (two dots in a row, or a leading dot).",
    "label_hyphen": "A part of that hostname starts or ends with a hyphen.",
    "invalid_characters": "Use only letters, digits, hyphens and dots in the hostname.",
    "invalid_idna": "That hostname contains characters that are not allowed in domain names.",
    "mixed_script": "A part of that hostname mixes alphabets, which is not allowed.",
    "ip_address": "Enter a hostname, not an IP address.",
    "single_label": "Enter a full hostname such as portal.yourcompany.com.",
    "wildcard": "Wildcard hostnames (*) cannot be used.",
    "reserved": "That is a reserved or private name; use a domain you own.",
    "base_domain": "That hostname belongs to our platform; use a domain you own.",
    "unknown_tld": "That hostname does not end in a known top-level domain.",
    "registrable_domain": (
        "Use a subdomain such as portal.yourcompany.com: a bare domain cannot be a CNAME."
    ),
}


def error_sentence(code: str, fallback: str | None = None) -> str:
    return _SENTENCES.get(code) or fallback or "Something went wrong. Try again."


@dataclass(frozen=True, kw_only=True)
class Fact:
    label: str
    value: str
    # ISO 8601 when `value` is a time (rendered in a <time> element).
    iso: str | None = None
    code: bool = False


@dataclass(frozen=True, kw_only=True)
class Treatment:
    key: str  # a DomainStatus value, "cname_lost", "none" or "community"
    tone: str
    title: str
    badge: str
    next_step: str
    facts: tuple[Fact, ...]
    can_submit: bool
    can_refresh: bool
    can_remove: bool
    refresh_label: str
    polling: bool
    removal: str | None


def _shown(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value.utcoffset() is not None else str(value)


def _timed(label: str, value: datetime | None) -> Fact:
    if value is None:
        return Fact(label=label, value="not yet")
    return Fact(label=label, value=_shown(value), iso=value.isoformat())


def _wait(ttl: int) -> str:
    if ttl >= 3600 and ttl % 3600 == 0:
        amount = f"{ttl // 3600} hour{'s' if ttl >= 7200 else ''}"
    elif ttl >= 60:
        amount = f"{(ttl + 59) // 60} minutes"
    else:
        amount = f"{ttl} seconds"
    return f"about {amount} (the record's TTL, {ttl} s), then retry"


def treatment(state: DomainStatusResponse) -> Treatment:
    """The treatment of `state`; actions as the matrix offers them (RBAC is applied later)."""
    g = state.guidance
    actions = set(g.actions)
    details = state.verification_details
    if not state.custom_domains:
        key = "community"
    elif state.status is None:
        key = "none"
    elif details is not None and details.cname_lost:
        key = "cname_lost"
    else:
        key = state.status.value
    facts: list[Fact] = []
    if state.domain is not None:
        facts.append(Fact(label="Custom domain", value=state.domain, code=True))
    facts.append(
        Fact(
            label="Default address" if key in ("community", "none") else "Canonical host",
            value=state.canonical_host,
            code=True,
        )
    )
    if state.status is S.ACTIVE:
        facts.append(_timed("Last verified", state.last_checked_at))
    elif state.status is not None:
        facts.append(_timed("Last checked", state.last_checked_at))
    if state.status is S.DNS_FAILED:
        cname = details.cname if details is not None else None
        observed = cname.observed if cname is not None else None
        found = (
            observed
            if observed
            else (cname.error if cname is not None and cname.error else "no CNAME record found")
        )
        facts.append(Fact(label="Last resolved target", value=found, code=bool(observed)))
        ttl = cname.ttl if cname is not None and cname.ttl else DEFAULT_TTL
        facts.append(Fact(label="Suggested wait", value=_wait(ttl)))
    if state.status is S.CERTIFICATE_FAILED:
        cert = details.certificate if details is not None else None
        reason = cert.reason if cert is not None and cert.reason else None
        facts.append(Fact(label="cert-manager reported", value=reason or "no reason was recorded"))
        facts.append(_timed("Reported at", cert.checked_at if cert is not None else None))
    if key == "cname_lost" and details is not None and details.cname is not None:
        facts.append(
            Fact(
                label="Now points to",
                value=details.cname.observed or "nothing (no CNAME record found)",
                code=bool(details.cname.observed),
            )
        )
    if state.status_message and key != "community":
        facts.append(Fact(label="Status message", value=state.status_message))
    failed = state.status in _FAILED
    return Treatment(
        key=key,
        tone=g.tone,
        title=g.title,
        badge=BADGES[key],
        next_step=g.next_step,
        facts=tuple(facts),
        can_submit=GuidanceAction.REQUEST_NEW_DOMAIN in actions,
        can_refresh=GuidanceAction.REFRESH in actions,
        can_remove=GuidanceAction.REMOVE in actions,
        refresh_label="Retry registration" if failed else "Refresh",
        polling=g.polling,
        removal=_REMOVAL.get(state.removal) if state.removal is not None else None,
    )
