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

There is no default key: the server refuses to start without one rather than
accept tokens signed with a well-known secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from core.settings import SettingsError, bounded_int

Algorithm = Literal["HS256", "RS256", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("HS256", "RS256", "ES256")

# RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_HMAC_KEY_BYTES = 32
MIN_RSA_KEY_BITS = 2048
MAX_LEEWAY_SECONDS = 300
MAX_RATE_LIMIT = 10_000


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

    def __post_init__(self) -> None:
        check_key(self.jwt_algorithm, self.jwt_key, source="jwt_key")
        if not self.jwt_audience or not self.jwt_issuer:
            raise ValueError("jwt_audience and jwt_issuer must not be empty")
        if not 0 <= self.jwt_leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"jwt_leeway_seconds must be 0-{MAX_LEEWAY_SECONDS}")
        if not 1 <= self.mutations_per_minute <= MAX_RATE_LIMIT:
            raise ValueError(f"mutations_per_minute must be 1-{MAX_RATE_LIMIT}")

    @property
    def custom_domains(self) -> bool:
        return self.edition is Edition.ENTERPRISE

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
        )


def check_key(algorithm: Algorithm, key: str, *, source: str) -> None:
    """Raise ValueError (naming `source`) unless `key` suits `algorithm`."""
    if algorithm == "HS256":
        if "-----BEGIN" in key:
            raise ValueError(
                f"{source} holds a PEM key, but HS256 needs a shared secret; set "
                "PORTAL_DOMAINS_JWT_ALGORITHM=RS256 or ES256 for public keys"
            )
        if len(key.encode()) < MIN_HMAC_KEY_BYTES:
            raise ValueError(
                f"{source}: the HS256 secret must be at least {MIN_HMAC_KEY_BYTES} bytes "
                "(e.g. `openssl rand -hex 32`)"
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
