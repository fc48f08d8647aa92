"""Settings of the REST API, read once by `portal-domains serve` (or a test) and passed down.

Environment variables (defaults in brackets):

- PORTAL_DOMAINS_JWT_ALGORITHM [HS256]: HS256, RS256 or ES256; tokens signed
  with any other algorithm are refused.
- PORTAL_DOMAINS_JWT_KEY: HS256: the shared secret (at least 32 bytes);
  RS256/ES256: the PEM public key.
- PORTAL_DOMAINS_JWT_KEY_FILE: a file holding the same, instead of the above.
- PORTAL_DOMAINS_JWT_AUDIENCE [portal-domains]: the `aud` every token must carry.
- PORTAL_DOMAINS_JWT_ISSUER [portal-domains]: the `iss` every token must carry.
- PORTAL_DOMAINS_JWT_LEEWAY_SECONDS [30]: clock skew tolerated on exp/nbf/iat (0-300).
- PORTAL_DOMAINS_EDITION [community]: `enterprise` enables custom domains;
  `community` shows the default portal host only and refuses changes.
- PORTAL_DOMAINS_API_RATE_LIMIT [10]: mutations per tenant per minute (1-10000).
- PORTAL_DOMAINS_ADMIN_ROLE [tenant_admin]: the tenant role that may change
  its own tenant's domain.
- PORTAL_DOMAINS_READER_ROLES [tenant_member]: comma-separated tenant roles
  that may read their own tenant's status.
- PORTAL_DOMAINS_OPERATOR_ROLE [platform_operator]: the role that may act on
  any tenant.
- PORTAL_DOMAINS_JWT_MAX_LIFETIME_SECONDS [86400]: tokens valid for longer
  (`exp - iat`, or `exp - now` without `iat`) are refused (60-604800).
- PORTAL_DOMAINS_API_CALLER_RATE_LIMIT [30]: per caller and minute, mutation
  attempts (checked before anything is audited) and refusals audited as rows of
  their own; the rest are counted (api.refusals) (1-10000).
- PORTAL_DOMAINS_API_AUDIT_WINDOW_SECONDS [60]: identical refusals of one caller
  within this window share one audit row and a count (1-3600).
- PORTAL_DOMAINS_API_DOCS [on, off in the prod environment]: serve /docs and
  /openapi.json.
- PORTAL_DOMAINS_API_FORWARDED_ALLOW_IPS [none]: comma-separated proxy
  addresses or networks (or `*`) whose X-Forwarded-For/-Proto uvicorn trusts;
  unset, forwarded headers are ignored.

There is no default key: the server refuses to start without one rather than
accept tokens signed with a well-known secret.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    load_der_private_key,
    load_der_public_key,
    load_pem_public_key,
)

from core.settings import SettingsError, bounded_int

Algorithm = Literal["HS256", "RS256", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("HS256", "RS256", "ES256")

# RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_HMAC_KEY_BYTES = 32
MIN_RSA_KEY_BITS = 2048
MAX_LEEWAY_SECONDS = 300
MAX_RATE_LIMIT = 10_000
# A character-frequency estimate (see hmac_key_bits): it catches secrets such as
# "a" * 32 or a word repeated, not every weak secret; `openssl rand -hex 32` gives ~240.
MIN_HMAC_KEY_BITS = 80
MIN_TOKEN_LIFETIME = 60
MAX_TOKEN_LIFETIME = 7 * 24 * 3600
MAX_AUDIT_WINDOW = 3600
PRODUCTION_ENVIRONMENT = "prod"


class Edition(StrEnum):
    COMMUNITY = "community"
    ENTERPRISE = "enterprise"


@dataclass(frozen=True, kw_only=True)
class RoleNames:
    """The `role` claim values the API knows; any other role is denied everything."""

    admin: str = "tenant_admin"
    readers: frozenset[str] = frozenset({"tenant_member"})
    operator: str = "platform_operator"

    def __post_init__(self) -> None:
        names = [self.admin, self.operator, *self.readers]
        if any(not name or name != name.strip() for name in names):
            raise ValueError(f"role names must be non-empty and unpadded, got {sorted(names)}")
        if len(set(names)) != len(names):
            raise ValueError(
                f"admin role {self.admin!r}, operator role {self.operator!r} and reader roles "
                f"{sorted(self.readers)} must all differ"
            )


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    jwt_algorithm: Algorithm
    # The HS256 secret or the PEM public key; never printed.
    jwt_key: str = field(repr=False)
    jwt_audience: str
    jwt_issuer: str
    jwt_leeway_seconds: int
    edition: Edition
    mutations_per_minute: int
    roles: RoleNames = field(default_factory=RoleNames)
    jwt_max_lifetime_seconds: int = 86_400
    caller_rate_limit: int = 30
    audit_window_seconds: int = 60
    # None: by environment (off in prod); see docs_enabled.
    docs: bool | None = None
    # Empty: uvicorn ignores X-Forwarded-* from everyone.
    forwarded_allow_ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_key(self.jwt_algorithm, self.jwt_key, source="jwt_key")
        if not MIN_TOKEN_LIFETIME <= self.jwt_max_lifetime_seconds <= MAX_TOKEN_LIFETIME:
            raise ValueError(
                f"jwt_max_lifetime_seconds must be {MIN_TOKEN_LIFETIME}-{MAX_TOKEN_LIFETIME}"
            )
        if not 1 <= self.caller_rate_limit <= MAX_RATE_LIMIT:
            raise ValueError(f"caller_rate_limit must be 1-{MAX_RATE_LIMIT}")
        if not 1 <= self.audit_window_seconds <= MAX_AUDIT_WINDOW:
            raise ValueError(f"audit_window_seconds must be 1-{MAX_AUDIT_WINDOW}")
        for entry in self.forwarded_allow_ips:
            check_proxy(entry)
        if not self.jwt_audience or not self.jwt_issuer:
            raise ValueError("jwt_audience and jwt_issuer must not be empty")
        if not 0 <= self.jwt_leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"jwt_leeway_seconds must be 0-{MAX_LEEWAY_SECONDS}")
        if not 1 <= self.mutations_per_minute <= MAX_RATE_LIMIT:
            raise ValueError(f"mutations_per_minute must be 1-{MAX_RATE_LIMIT}")

    @property
    def custom_domains(self) -> bool:
        return self.edition is Edition.ENTERPRISE

    def docs_enabled(self, environment: str) -> bool:
        """Serve /docs and /openapi.json? Unless configured: everywhere but in prod."""
        if self.docs is not None:
            return self.docs
        return environment != PRODUCTION_ENVIRONMENT

    @property
    def proxy_headers(self) -> bool:
        return bool(self.forwarded_allow_ips)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if environ is None else environ
        raw_algorithm = env.get("PORTAL_DOMAINS_JWT_ALGORITHM") or "HS256"
        if raw_algorithm not in ALGORITHMS:
            raise SettingsError(
                f"PORTAL_DOMAINS_JWT_ALGORITHM={raw_algorithm!r}: expected one of "
                f"{', '.join(ALGORITHMS)}"
            )
        algorithm: Algorithm = raw_algorithm
        key, source = _read_key(env)
        try:
            check_key(algorithm, key, source=source)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        edition_raw = env.get("PORTAL_DOMAINS_EDITION") or Edition.COMMUNITY.value
        try:
            edition = Edition(edition_raw)
        except ValueError:
            raise SettingsError(
                f"PORTAL_DOMAINS_EDITION={edition_raw!r}: expected community or enterprise"
            ) from None
        try:
            roles = RoleNames(
                admin=env.get("PORTAL_DOMAINS_ADMIN_ROLE") or "tenant_admin",
                readers=frozenset(
                    name.strip()
                    for name in (env.get("PORTAL_DOMAINS_READER_ROLES") or "tenant_member").split(
                        ","
                    )
                    if name.strip()
                ),
                operator=env.get("PORTAL_DOMAINS_OPERATOR_ROLE") or "platform_operator",
            )
        except ValueError as exc:
            raise SettingsError(
                "PORTAL_DOMAINS_ADMIN_ROLE / _READER_ROLES / _OPERATOR_ROLE: " + str(exc)
            ) from None
        return cls(
            jwt_algorithm=algorithm,
            jwt_key=key,
            jwt_audience=_text(env, "PORTAL_DOMAINS_JWT_AUDIENCE", "portal-domains"),
            jwt_issuer=_text(env, "PORTAL_DOMAINS_JWT_ISSUER", "portal-domains"),
            jwt_leeway_seconds=bounded_int(
                env, "PORTAL_DOMAINS_JWT_LEEWAY_SECONDS", 30, 0, MAX_LEEWAY_SECONDS
            ),
            edition=edition,
            mutations_per_minute=bounded_int(
                env, "PORTAL_DOMAINS_API_RATE_LIMIT", 10, 1, MAX_RATE_LIMIT
            ),
            roles=roles,
            jwt_max_lifetime_seconds=bounded_int(
                env,
                "PORTAL_DOMAINS_JWT_MAX_LIFETIME_SECONDS",
                86_400,
                MIN_TOKEN_LIFETIME,
                MAX_TOKEN_LIFETIME,
            ),
            caller_rate_limit=bounded_int(
                env, "PORTAL_DOMAINS_API_CALLER_RATE_LIMIT", 30, 1, MAX_RATE_LIMIT
            ),
            audit_window_seconds=bounded_int(
                env, "PORTAL_DOMAINS_API_AUDIT_WINDOW_SECONDS", 60, 1, MAX_AUDIT_WINDOW
            ),
            docs=_switch(env, "PORTAL_DOMAINS_API_DOCS"),
            forwarded_allow_ips=_proxies(env, "PORTAL_DOMAINS_API_FORWARDED_ALLOW_IPS"),
        )


def check_key(algorithm: Algorithm, key: str, *, source: str) -> None:
    """Raise ValueError (naming `source`) unless `key` suits `algorithm`."""
    if algorithm == "HS256":
        if "-----BEGIN" in key or "-----END" in key or _is_der_key(key):
            # A public key as the HMAC secret lets anyone who has the public key
            # sign tokens (algorithm confusion), with or without the PEM header.
            raise ValueError(
                f"{source} holds a PEM key or certificate, but HS256 needs a shared secret; set "
                "PORTAL_DOMAINS_JWT_ALGORITHM=RS256 or ES256 for public keys"
            )
        if len(key.encode()) < MIN_HMAC_KEY_BYTES:
            raise ValueError(
                f"{source}: the HS256 secret must be at least {MIN_HMAC_KEY_BYTES} bytes "
                "(e.g. `openssl rand -hex 32`)"
            )
        if hmac_key_bits(key) < MIN_HMAC_KEY_BITS or _is_periodic(key):
            raise ValueError(
                f"{source}: the HS256 secret is too predictable (repeated characters or a "
                "repeated pattern); generate one with `openssl rand -hex 32`"
            )
        return
    if "PRIVATE KEY-----" in key:
        raise ValueError(
            f"{source} holds a private key; the API only verifies tokens, give it the public "
            "key (`openssl pkey -in key.pem -pubout`)"
        )
    try:
        public = load_pem_public_key(key.encode())
    except ValueError:
        raise ValueError(
            f"{source} is not a PEM public key (-----BEGIN PUBLIC KEY-----), as {algorithm} needs"
        ) from None
    if algorithm == "RS256":
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError(f"{source}: RS256 needs an RSA public key")
        if public.key_size < MIN_RSA_KEY_BITS:
            raise ValueError(f"{source}: the RSA key must have at least {MIN_RSA_KEY_BITS} bits")
    elif not (
        isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    ):
        raise ValueError(f"{source}: ES256 needs an EC public key on curve P-256")


def hmac_key_bits(key: str) -> float:
    """An upper estimate of a secret's entropy: its length times its character entropy."""
    counts = Counter(key)
    total = len(key)
    if total == 0:
        return 0.0
    return -total * sum(n / total * math.log2(n / total) for n in counts.values())


def _is_periodic(key: str) -> bool:
    # "password" * 4 has a fair character entropy but is one short word repeated.
    size = len(key)
    return any(
        key == key[:period] * (size // period)
        for period in range(1, size // 2 + 1)
        if size % period == 0
    )


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _is_der_key(key: str) -> bool:
    """Is `key` the base64 body of a PEM key or certificate, its header stripped?"""
    compact = "".join(key.split())
    if len(compact) < 64 or not _BASE64.fullmatch(compact):
        return False
    try:
        der = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    if not der.startswith(b"\x30"):  # every key and certificate is an ASN.1 SEQUENCE
        return False
    loaders = (
        load_der_public_key,
        lambda data: load_der_private_key(data, password=None),
        x509.load_der_x509_certificate,
    )
    for load in loaders:
        try:
            load(der)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        return True
    return False


def check_proxy(entry: str) -> None:
    """Raise ValueError unless `entry` is `*`, an IP address or a network."""
    if entry == "*":
        return
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(
            f"forwarded_allow_ips entry {entry!r} is not an IP address, a network or *"
        ) from None


def _switch(env: Mapping[str, str], key: str) -> bool | None:
    value = env.get(key)
    if value is None or value == "":
        return None
    if value not in ("on", "off"):
        raise SettingsError(f"{key}={value!r}: expected on or off")
    return value == "on"


def _proxies(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    entries = tuple(part.strip() for part in (env.get(key) or "").split(",") if part.strip())
    for entry in entries:
        try:
            check_proxy(entry)
        except ValueError as exc:
            raise SettingsError(f"{key}: {exc}") from None
    return entries


def _read_key(env: Mapping[str, str]) -> tuple[str, str]:
    inline = env.get("PORTAL_DOMAINS_JWT_KEY") or ""
    path = env.get("PORTAL_DOMAINS_JWT_KEY_FILE") or ""
    if inline and path:
        raise SettingsError("set PORTAL_DOMAINS_JWT_KEY or PORTAL_DOMAINS_JWT_KEY_FILE, not both")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"PORTAL_DOMAINS_JWT_KEY_FILE={path!r}: cannot read it ({exc})"
            ) from None
        # A trailing newline from `echo secret > file` is not part of an HMAC secret.
        return text.strip(), "PORTAL_DOMAINS_JWT_KEY_FILE"
    if inline:
        return inline, "PORTAL_DOMAINS_JWT_KEY"
    raise SettingsError(
        "no token verification key: set PORTAL_DOMAINS_JWT_KEY (an HS256 secret of at least "
        f"{MIN_HMAC_KEY_BYTES} bytes, or a PEM public key with PORTAL_DOMAINS_JWT_ALGORITHM="
        "RS256/ES256) or PORTAL_DOMAINS_JWT_KEY_FILE"
    )


def _text(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key)
    if value is None or value == "":
        return default
    if value != value.strip():
        raise SettingsError(f"{key}={value!r} has surrounding whitespace")
    return value
