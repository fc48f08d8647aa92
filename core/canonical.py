"""A tenant's canonical host, prefix and certificate secret name.

Every tenant gets `<prefix>.<base domain>` as the CNAME target for its vanity
hostname; the prefix also names its TLS secret and its Kubernetes objects. The
prefix starts as the first 7 hex digits of the tenant UUID. 7 hex digits are 28
bits, so among 10,000 tenants some pair collides with probability ~17%: a
newcomer whose 7-digit prefix is taken gets 8, 9, ... up to all 32 digits.
Once assigned, a prefix never changes (the workflow, the stack and Git are keyed
on it), so lengthening applies to the newcomer only.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from uuid import UUID

from core.errors import ErrorKind, PortalDomainsError
from core.hostnames import normalize_base_domain

PREFIX_MIN_LENGTH = 7
PREFIX_MAX_LENGTH = 32

_PREFIX = re.compile(rf"[0-9a-f]{{{PREFIX_MIN_LENGTH},{PREFIX_MAX_LENGTH}}}")
_TENANT_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}",
    re.IGNORECASE,
)


class TenantIdError(PortalDomainsError, ValueError):
    """A tenant id is not a UUID."""

    code = "invalid_tenant_id"
    kind = ErrorKind.INVALID_INPUT


class PrefixExhausted(PortalDomainsError, RuntimeError):
    """Even the full 32-digit prefix is taken: the same tenant id is registered twice."""

    code = "prefix_exhausted"


def parse_tenant_id(raw: str | UUID) -> UUID:
    """Parse a tenant id written as 8-4-4-4-12 hex digits (or 32 bare hex digits)."""
    if isinstance(raw, UUID):
        value = raw
    else:
        text = raw.strip()
        if not _TENANT_ID.fullmatch(text):
            raise TenantIdError(
                f"tenant id {raw!r} is not a UUID (expected 8-4-4-4-12 hex digits, "
                "e.g. 3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f)"
            )
        value = UUID(text)
    if value.int == 0:
        raise TenantIdError("the nil UUID 00000000-0000-0000-0000-000000000000 is not a tenant id")
    return value


def prefix_candidates(tenant_id: UUID) -> list[str]:
    """Every prefix this tenant may get, shortest first."""
    digits = tenant_id.hex
    return [digits[:n] for n in range(PREFIX_MIN_LENGTH, PREFIX_MAX_LENGTH + 1)]


def choose_prefix(tenant_id: UUID, taken: Collection[str]) -> str:
    """The shortest prefix of the tenant's hex digits that is not in `taken`.

    `taken` holds prefixes already assigned to other tenants (lowercase hex,
    as stored); only those starting with this tenant's first 7 digits matter.
    """
    for candidate in prefix_candidates(tenant_id):
        if candidate not in taken:
            return candidate
    raise PrefixExhausted(f"every prefix of tenant {tenant_id} is taken, including the full id")


def validate_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"canonical prefix {prefix!r} must be {PREFIX_MIN_LENGTH}-{PREFIX_MAX_LENGTH} "
            "lowercase hex digits"
        )
    return prefix


def canonical_host(prefix: str, base_domain: str) -> str:
    """`<prefix>.<base domain>`: the CNAME target for the tenant's vanity hostname."""
    return f"{validate_prefix(prefix)}.{normalize_base_domain(base_domain)}"


def certificate_secret_name(prefix: str) -> str:
    """The TLS secret cert-manager writes and the Istio gateway reads."""
    return f"portal-domain-{validate_prefix(prefix)}-tls"
