"""Settings of the web pages (the tenant settings page), read once by the entrypoint.

Environment variables (defaults in brackets):

- PORTAL_DOMAINS_WEB_SESSION_KEY: the HMAC key that signs session cookies and
  CSRF tokens (at least 32 bytes). Unset: derived from the HS256 JWT secret;
  with RS256/ES256 (the JWT key is public) a random key per process is used,
  so sessions do not survive a restart nor move between replicas: set it.
- PORTAL_DOMAINS_WEB_SESSION_SECONDS [3600]: how long a page session lasts
  after the handover (60-86400); then the host application hands over again.
- PORTAL_DOMAINS_WEB_HANDOVER_SECONDS [300]: the longest lifetime (`exp - iat`)
  a handover token may have (30-900); `iat` is required.
- PORTAL_DOMAINS_WEB_FRAME_ANCESTORS ['none']: the CSP frame-ancestors sources
  allowed to frame the pages (space-separated origins such as
  https://app.example.com). The session cookie is SameSite=Lax, so only a
  same-site host application can frame the page with a session.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from api.settings import MIN_HMAC_KEY_BYTES, ApiSettings
from core.settings import SettingsError, bounded_int

logger = logging.getLogger(__name__)

DEFAULT_SESSION_SECONDS = 3600
DEFAULT_HANDOVER_SECONDS = 300
# One source: 'none', 'self', or an http(s) origin (optionally with a *. host wildcard).
_SOURCE = re.compile(r"'none'|'self'|https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_KEY_LABEL = b"portal-domains web session v1"


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    session_key: bytes = field(repr=False)
    session_seconds: int = DEFAULT_SESSION_SECONDS
    handover_seconds: int = DEFAULT_HANDOVER_SECONDS
    frame_ancestors: tuple[str, ...] = ("'none'",)
    # The page polls the status this often while it moves on its own (the design: 15 s).
    poll_seconds: int = 15

    def __post_init__(self) -> None:
        if len(self.session_key) < MIN_HMAC_KEY_BYTES:
            raise ValueError(f"session_key must be at least {MIN_HMAC_KEY_BYTES} bytes")
        if not 60 <= self.session_seconds <= 86_400:
            raise ValueError("session_seconds must be 60-86400")
        if not 30 <= self.handover_seconds <= 900:
            raise ValueError("handover_seconds must be 30-900")
        if not self.frame_ancestors or any(
            not _SOURCE.fullmatch(source) for source in self.frame_ancestors
        ):
            raise ValueError(
                "frame_ancestors must be 'none', 'self' or http(s) origins, got "
                f"{' '.join(self.frame_ancestors)!r}"
            )
        if "'none'" in self.frame_ancestors and len(self.frame_ancestors) > 1:
            raise ValueError("frame_ancestors: 'none' cannot be combined with other sources")

    @classmethod
    def derived(cls, api: ApiSettings) -> WebSettings:
        """The defaults, the session key derived from `api` (see the module docstring)."""
        return cls(session_key=derive_session_key(api))

    @classmethod
    def from_env(cls, api: ApiSettings, environ: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if environ is None else environ
        raw_key = env.get("PORTAL_DOMAINS_WEB_SESSION_KEY") or ""
        if raw_key and len(raw_key.encode()) < MIN_HMAC_KEY_BYTES:
            raise SettingsError(
                f"PORTAL_DOMAINS_WEB_SESSION_KEY must be at least {MIN_HMAC_KEY_BYTES} bytes "
                "(e.g. `openssl rand -hex 32`)"
            )
        key = raw_key.encode() if raw_key else derive_session_key(api)
        ancestors = tuple((env.get("PORTAL_DOMAINS_WEB_FRAME_ANCESTORS") or "'none'").split())
        try:
            return cls(
                session_key=key,
                session_seconds=bounded_int(
                    env,
                    "PORTAL_DOMAINS_WEB_SESSION_SECONDS",
                    DEFAULT_SESSION_SECONDS,
                    60,
                    86_400,
                ),
                handover_seconds=bounded_int(
                    env, "PORTAL_DOMAINS_WEB_HANDOVER_SECONDS", DEFAULT_HANDOVER_SECONDS, 30, 900
                ),
                frame_ancestors=ancestors,
            )
        except ValueError as exc:
            raise SettingsError(f"PORTAL_DOMAINS_WEB_FRAME_ANCESTORS: {exc}") from None


def derive_session_key(api: ApiSettings) -> bytes:
    """A key of its own from the HS256 secret; a random one when the JWT key is public."""
    if api.jwt_algorithm == "HS256":
        # Derived, not reused: a session cookie can never verify as a JWT and back.
        return hmac.new(api.jwt_key.encode(), _KEY_LABEL, hashlib.sha256).digest()
    logger.warning(
        "PORTAL_DOMAINS_WEB_SESSION_KEY is not set and the JWT key is public (%s): page "
        "sessions use a random key and end when this process does",
        api.jwt_algorithm,
    )
    return secrets.token_bytes(32)
