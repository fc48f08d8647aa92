"""Bearer tokens: verify a JWT into a Principal, and mint HS256 development tokens.

A token is accepted only when its signature verifies with the configured key
and algorithm (the `alg` header must be exactly that algorithm: no `none`, no
HS256-signed-with-the-public-key confusion), it has not expired, and its
`aud` and `iss` are the configured ones, and it is not valid for longer than
the configured maximum lifetime (`exp - iat`; without `iat`, `exp - now`): a
stolen long-lived token would outlive any revocation. `exp`, `aud`, `iss`,
`sub` and `role` are required; `tenant_id` (a UUID) is required for tenant
roles, which rbac.decide checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt

from api.settings import ApiSettings
from core.canonical import TenantIdError, parse_tenant_id
from core.errors import ErrorKind, PortalDomainsError

logger = logging.getLogger(__name__)

# The audit actor is "user:<sub>" and may be at most 200 characters.
MAX_SUBJECT_LENGTH = 190
MAX_TOKEN_LENGTH = 8192
MAX_DEV_TOKEN_TTL = 7 * 24 * 3600


class AuthError(PortalDomainsError):
    """The request is not authenticated; `code` is stable, `message` says why."""

    kind = ErrorKind.INVALID_INPUT

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, kw_only=True)
class Principal:
    subject: str
    role: str
    tenant_id: UUID | None
    # The verified `iss`: recorded with refusals so a log names who vouched for the caller.
    issuer: str

    @property
    def actor(self) -> str:
        return f"user:{self.subject}"


def authenticate(authorization: str | None, api: ApiSettings) -> Principal:
    """The Principal of an `Authorization: Bearer <jwt>` header value, or AuthError."""
    if not authorization:
        raise AuthError("missing_token", "send an Authorization: Bearer <token> header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("invalid_token", "the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthError("invalid_token", "the token is too long")
    return verify_token(token, api)


def verify_token(token: str, api: ApiSettings) -> Principal:
    try:
        claims = jwt.decode(
            token,
            api.jwt_key,
            algorithms=[api.jwt_algorithm],
            audience=api.jwt_audience,
            issuer=api.jwt_issuer,
            leeway=api.jwt_leeway_seconds,
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token_expired", "the token has expired; get a new one") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError("invalid_token", f"the token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise AuthError(
            "invalid_token", f"the token is not meant for this API (aud must be {api.jwt_audience})"
        ) from None
    except jwt.InvalidIssuerError:
        raise AuthError(
            "invalid_token", f"the token was not issued by {api.jwt_issuer} (iss)"
        ) from None
    except jwt.ImmatureSignatureError:
        raise AuthError("invalid_token", "the token is not valid yet (nbf/iat)") from None
    except jwt.InvalidTokenError as exc:
        # Signature, algorithm, malformed token: say which class, never echo the token.
        logger.debug("token refused: %s", exc.__class__.__name__)
        raise AuthError(
            "invalid_token", "the token is malformed or its signature does not verify"
        ) from None
    _check_lifetime(claims, api)
    return _principal(claims)


def _check_lifetime(claims: dict[str, Any], api: ApiSettings) -> None:
    limit = api.jwt_max_lifetime_seconds
    expires = claims["exp"]  # verified numeric by jwt.decode
    issued = claims.get("iat")
    if isinstance(issued, int | float) and not isinstance(issued, bool):
        lifetime = float(expires) - float(issued)
    else:
        lifetime = float(expires) - datetime.now(UTC).timestamp() - api.jwt_leeway_seconds
    if lifetime > limit:
        raise AuthError(
            "token_lifetime_too_long",
            f"the token is valid for longer than {limit} s (exp - iat); get a shorter-lived one",
        )


def _principal(claims: dict[str, Any]) -> Principal:
    subject = claims.get("sub")
    if (
        not isinstance(subject, str)
        or not subject.strip()
        or len(subject) > MAX_SUBJECT_LENGTH
        or not subject.isprintable()
    ):
        raise AuthError(
            "invalid_token",
            f"the 'sub' claim must be a printable string of 1-{MAX_SUBJECT_LENGTH} characters",
        )
    role = claims.get("role")
    if not isinstance(role, str) or not role:
        raise AuthError("invalid_token", "the token lacks a 'role' claim (a string)")
    raw_tenant = claims.get("tenant_id")
    tenant: UUID | None = None
    if raw_tenant is not None:
        if not isinstance(raw_tenant, str):
            raise AuthError("invalid_token", "the 'tenant_id' claim must be a UUID string")
        try:
            tenant = parse_tenant_id(raw_tenant)
        except TenantIdError:
            raise AuthError("invalid_token", "the 'tenant_id' claim is not a UUID") from None
    return Principal(subject=subject, role=role, tenant_id=tenant, issuer=str(claims["iss"]))


def mint_dev_token(
    api: ApiSettings,
    *,
    subject: str,
    role: str,
    tenant_id: UUID | None,
    ttl_seconds: int,
    now: datetime | None = None,
) -> str:
    """An HS256 token for local development and the README examples."""
    if api.jwt_algorithm != "HS256":
        raise ValueError(
            f"tokens can only be minted with an HS256 secret; PORTAL_DOMAINS_JWT_ALGORITHM is "
            f"{api.jwt_algorithm} (get tokens from your identity provider)"
        )
    longest = min(MAX_DEV_TOKEN_TTL, api.jwt_max_lifetime_seconds)
    if not 1 <= ttl_seconds <= longest:
        raise ValueError(
            f"ttl must be 1-{longest} seconds (PORTAL_DOMAINS_JWT_MAX_LIFETIME_SECONDS), "
            f"got {ttl_seconds}"
        )
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role,
        "aud": api.jwt_audience,
        "iss": api.jwt_issuer,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_seconds)).timestamp()),
    }
    if tenant_id is not None:
        claims["tenant_id"] = str(tenant_id)
    return jwt.encode(claims, api.jwt_key, algorithm="HS256")
