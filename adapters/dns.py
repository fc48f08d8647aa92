"""DNS checks a tenant's vanity hostname must pass: its CNAME, and CAA for Let's Encrypt.

`lookup_cname` reports what the name points at, or a sentence saying what is
wrong with it; `cname_matches` compares that with the canonical host. `check_caa`
decides, the way the CA will (RFC 8659), whether the name's CAA records let our
CA issue, so a tenant whose CAA forbids Let's Encrypt is told how to fix it
instead of watching issuance fail. All lookups go through `DnsSettings`: the
system resolver in production, a local server (`loopback.dns_server`) in
tests and the demo.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype
import dns.rdtypes.ANY.CAA
import dns.rdtypes.ANY.CNAME
import dns.resolver

from core.errors import ErrorKind, PortalDomainsError

logger = logging.getLogger(__name__)

# CAA property tags a CA understands; a critical record with any other tag stops issuance.
_KNOWN_CAA_TAGS = frozenset(
    {"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"}
)


@dataclass(frozen=True, kw_only=True)
class DnsSettings:
    """Where to send queries. No nameservers means the system resolver (/etc/resolv.conf)."""

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout_seconds: float = 3.0


@dataclass(frozen=True, kw_only=True)
class CnameObservation:
    """What `domain` points at (`observed`, lowercase, no trailing dot), or why nothing.

    `ttl`: the CNAME record's TTL in seconds as the resolver answered it (what is
    left of it when a caching resolver answers); None without a CNAME.
    """

    domain: str
    observed: str | None
    error: str | None
    ttl: int | None = None


@dataclass(frozen=True, kw_only=True)
class CaaResult:
    """Whether the CAA records that apply to a name let one of our CAs issue for it.

    `relevant_name` is where the deciding CAA set was found (None: no CAA anywhere),
    `records` its records in presentation form. `lookup_failed` means a CAA query
    could not be answered: CAs refuse to issue then, so `allowed` is False, but the
    condition is usually temporary and worth retrying.
    """

    allowed: bool
    relevant_name: str | None
    records: tuple[str, ...]
    message: str
    lookup_failed: bool = False


class CaaLookupFailed(PortalDomainsError):
    """The CAA records could not be read; the next attempt may succeed."""

    code = "caa_lookup_failed"
    kind = ErrorKind.UNAVAILABLE
    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"CAA lookup failed: {detail}")


class _LookupFailed(Exception):
    """A query got no usable answer; the message is a phrase for a person."""


def _plain(name: dns.name.Name | str) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    return text.strip().rstrip(".").lower()


def _resolver(settings: DnsSettings) -> dns.resolver.Resolver:
    if settings.nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(settings.nameservers)
    else:
        resolver = dns.resolver.Resolver()
    resolver.port = settings.port
    resolver.timeout = settings.timeout_seconds
    resolver.lifetime = settings.timeout_seconds
    resolver.cache = None
    return resolver


def _where(settings: DnsSettings) -> str:
    if not settings.nameservers:
        return "the system resolver"
    servers = ", ".join(f"{ns}:{settings.port}" for ns in settings.nameservers)
    return f"the nameserver{'s' if len(settings.nameservers) > 1 else ''} {servers}"


def _query(
    name: str, rdtype: dns.rdatatype.RdataType, settings: DnsSettings
) -> dns.resolver.Answer | None:
    """The answer (possibly empty), None for NXDOMAIN; `_LookupFailed` for the rest."""
    try:
        resolver = _resolver(settings)
    except dns.resolver.NoResolverConfiguration as error:
        raise _LookupFailed(f"no nameserver is configured on this machine ({error})") from error
    try:
        return resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.exception.Timeout as error:
        raise _LookupFailed(
            f"no answer from {_where(settings)} within {settings.timeout_seconds:g}s"
        ) from error
    except dns.resolver.NoNameservers as error:
        raise _LookupFailed(
            f"{_where(settings)} could not answer for {_plain(name)} (SERVFAIL or REFUSED)"
        ) from error
    except dns.resolver.YXDOMAIN as error:
        raise _LookupFailed(f"{_plain(name)} is too long once its DNAME is applied") from error
    except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as error:
        raise _LookupFailed(f"{name!r} is not a valid DNS name ({error})") from error


# -- CNAME ----------------------------------------------------------------------


def lookup_cname(domain: str, *, settings: DnsSettings) -> CnameObservation:
    """Ask for `domain`'s CNAME. On a miss, `error` says what is there instead."""
    domain = _plain(domain)
    try:
        answer = _query(domain, dns.rdatatype.CNAME, settings)
        if answer is None:
            return CnameObservation(
                domain=domain, observed=None, error="the name does not exist (NXDOMAIN)"
            )
        if answer.rrset is not None:
            for rdata in answer.rrset:
                if isinstance(rdata, dns.rdtypes.ANY.CNAME.CNAME):
                    return CnameObservation(
                        domain=domain,
                        observed=_plain(rdata.target),
                        error=None,
                        ttl=answer.rrset.ttl,
                    )
        return CnameObservation(
            domain=domain, observed=None, error=_what_is_there(domain, settings)
        )
    except _LookupFailed as failure:
        return CnameObservation(domain=domain, observed=None, error=str(failure))


def _what_is_there(domain: str, settings: DnsSettings) -> str:
    """Describe the records a name has where a CNAME was expected."""
    for rdtype, label in ((dns.rdatatype.A, "an A"), (dns.rdatatype.AAAA, "an AAAA")):
        try:
            answer = _query(domain, rdtype, settings)
        except _LookupFailed:
            break
        if answer is not None and answer.rrset is not None:
            values = sorted(rdata.to_text() for rdata in answer.rrset)
            noun = "record" if len(values) == 1 else "records"
            article = label if len(values) == 1 else label.split()[1]
            return f"{article} {noun} {', '.join(values)} instead of a CNAME"
    return "no CNAME record (the name exists but has no CNAME or address records)"


def cname_matches(observation: CnameObservation, expected: str) -> bool:
    """True when the observed target is `expected`, ignoring case and a trailing dot."""
    return observation.observed is not None and _plain(observation.observed) == _plain(expected)


# -- CAA ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _CaaRecord:
    flags: int
    tag: str
    value: str

    @property
    def critical(self) -> bool:
        return bool(self.flags & 0x80)

    def text(self) -> str:
        return f'{self.flags} {self.tag} "{self.value}"'


def _parse_issue_value(value: str) -> tuple[str | None, dict[str, str]]:
    """`letsencrypt.org; validationmethods=http-01` -> ("letsencrypt.org", {...})."""
    issuer, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, val = part.strip().partition("=")
        if sep:
            params[key.strip().lower()] = val.strip()
    return (_plain(issuer) or None), params


def _authorizes(
    record: _CaaRecord, ca_domains: Sequence[str], validation_method: str | None
) -> bool:
    issuer, params = _parse_issue_value(record.value)
    if issuer is None or issuer not in {_plain(ca) for ca in ca_domains}:
        return False
    methods = params.get("validationmethods")
    if validation_method is not None and methods is not None:
        return validation_method in {m.strip().lower() for m in methods.split(",")}
    return True


def _candidate_names(domain: str) -> list[str]:
    """The name and each parent up to, not including, the root (RFC 8659 section 3)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def _relevant_caa_set(
    domain: str, settings: DnsSettings
) -> tuple[str, str, list[_CaaRecord]] | None:
    """(queried name, owner of the records, records) of the first non-empty CAA set.

    A query for a name that is an alias follows the CNAME chain and returns the
    CAA set at its end, which is what a CA sees; climbing goes on from the
    parent of the queried name, not of the alias target (RFC 8659).
    """
    for candidate in _candidate_names(domain):
        answer = _query(candidate, dns.rdatatype.CAA, settings)
        if answer is None or answer.rrset is None or len(answer.rrset) == 0:
            continue
        records = [
            _CaaRecord(
                flags=rdata.flags,
                tag=rdata.tag.decode("ascii", "replace").lower(),
                value=rdata.value.decode("utf-8", "replace"),
            )
            for rdata in answer.rrset
            if isinstance(rdata, dns.rdtypes.ANY.CAA.CAA)
        ]
        if records:
            records.sort(key=lambda r: (r.tag, r.value, r.flags))
            return candidate, _plain(answer.rrset.name), records
    return None


def check_caa(
    domain: str,
    *,
    ca_domains: Sequence[str] = ("letsencrypt.org",),
    settings: DnsSettings,
    validation_method: str | None = "http-01",
) -> CaaResult:
    """Would a CA identified by one of `ca_domains` be allowed to issue for `domain`?

    `validation_method` is the ACME challenge we use: an `issue` record limited to
    other methods (`validationmethods=dns-01`) does not authorise us. Pass None to
    ignore that parameter.
    """
    domain = _plain(domain)
    wildcard = domain.startswith("*.")
    lookup_name = domain[2:] if wildcard else domain
    if not ca_domains:
        raise ValueError("check_caa needs at least one CA domain")
    try:
        found = _relevant_caa_set(lookup_name, settings)
    except _LookupFailed as failure:
        return CaaResult(
            allowed=False,
            relevant_name=None,
            records=(),
            lookup_failed=True,
            message=(
                f"{domain}: could not read CAA records: {failure}. CAs refuse to issue "
                "while CAA lookups fail; retry, and check the domain's DNS servers if it persists"
            ),
        )
    if found is None:
        return CaaResult(
            allowed=True,
            relevant_name=None,
            records=(),
            message=f"{domain}: no CAA records on the name or its parents, so any CA may issue",
        )
    queried, owner, records = found
    texts = tuple(record.text() for record in records)
    where = owner if owner == queried else f"{owner} (the CNAME target of {queried})"
    ca = _plain(ca_domains[0])
    fix = f'add `{owner}. CAA 0 issue "{ca}"`'

    unknown_critical = [r for r in records if r.critical and r.tag not in _KNOWN_CAA_TAGS]
    if unknown_critical:
        tags = ", ".join(sorted({r.tag for r in unknown_critical}))
        return CaaResult(
            allowed=False,
            relevant_name=owner,
            records=texts,
            message=(
                f"{domain}: CAA at {where} has a critical property the CA does not know "
                f"({tags}), so no CA may issue; remove it or clear its critical flag (128)"
            ),
        )

    issue = [r for r in records if r.tag == "issue"]
    deciding = issue
    if wildcard:
        issuewild = [r for r in records if r.tag == "issuewild"]
        deciding = issuewild or issue
    if not deciding:
        return CaaResult(
            allowed=True,
            relevant_name=owner,
            records=texts,
            message=f"{domain}: CAA at {where} does not restrict which CA may issue",
        )
    if any(_authorizes(r, ca_domains, validation_method) for r in deciding):
        return CaaResult(
            allowed=True,
            relevant_name=owner,
            records=texts,
            message=f"{domain}: CAA at {where} allows {ca}",
        )

    issuers = sorted({i for r in deciding if (i := _parse_issue_value(r.value)[0]) is not None})
    ours = [
        r for r in deciding if _parse_issue_value(r.value)[0] in {_plain(c) for c in ca_domains}
    ]
    if ours:
        # Our CA is named, but only for other validation methods.
        allowed_methods = sorted(
            {_parse_issue_value(r.value)[1].get("validationmethods", "") for r in ours}
        )
        detail = (
            f"allows {ca} only with validationmethods={' / '.join(allowed_methods)}, "
            f"but certificates are validated with {validation_method}"
        )
        fix = f'add `{owner}. CAA 0 issue "{ca}; validationmethods={validation_method}"`'
    elif issuers:
        detail = f"allows only {', '.join(issuers)}"
    else:
        detail = 'forbids every CA (issue ";")'
    return CaaResult(
        allowed=False,
        relevant_name=owner,
        records=texts,
        message=f"{domain}: CAA at {where} {detail}; {fix}",
    )
