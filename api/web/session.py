"""Page sessions: a handover token becomes a signed session cookie; CSRF tokens per session.

The host application signs the user in: it sends the browser to
`/portal/session?token=<JWT>` with a token in the API's own format, verified by
api.auth.verify_token (signature, algorithm, aud, iss, exp, the API's maximum
lifetime), which must also carry `iat`, live at most
WebSettings.handover_seconds and is accepted once (a replay within its
lifetime is refused; the memory of used tokens is per process).

The session is stateless: the principal, an expiry and a random nonce, signed
with HMAC-SHA256 (WebSettings.session_key) into an HttpOnly, SameSite=Lax
cookie (Secure over https). Lax rather than Strict: the handover is a
cross-site navigation, and a Strict cookie set there is not sent on the
redirect that follows it; every state change is a POST, which Lax keeps
cross-site requests from carrying the cookie on, and which needs the CSRF
token as well.

The CSRF token (synchronizer pattern, stateless) is an HMAC of the session's
nonce under the session key: the page embeds it in every form and in a meta
tag for fetch(); a POST must send it back (form field `csrf_token` or header
`X-CSRF-Token`). A cross-site page can neither read it nor forge it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard
from uuid import UUID

from api.auth import MAX_TOKEN_LENGTH, AuthError, Principal, verify_token
from api.settings import ApiSettings
from api.web.settings import WebSettings

SESSION_COOKIE = "portal_domains_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_COOKIE_LENGTH = 2048


@dataclass(frozen=True, kw_only=True)
class Session:
    principal: Principal
    expires_at: int  # unix seconds
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Handover, session cookies and CSRF tokens, with one key; thread-safe."""

    def __init__(
        self, web: WebSettings, api: ApiSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._web = web
        self._api = api
        self._clock = clock
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def max_age(self) -> int:
        return self._web.session_seconds

    def handover(self, token: str | None) -> Session:
        """The session for a handover token, or AuthError (code and a sentence)."""
        if not token:
            raise AuthError("missing_token", "open this page from the application: it signs you in")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("invalid_token", "the sign-in token is too long")
        principal = verify_token(token, self._api)
        claims = _unverified_claims(token)
        issued, expires = claims.get("iat"), claims.get("exp")
        if not _is_number(issued) or not _is_number(expires):
            raise AuthError("invalid_token", "a sign-in token must carry 'iat' and 'exp'")
        if float(expires) - float(issued) > self._web.handover_seconds:
            raise AuthError(
                "token_lifetime_too_long",
                f"a sign-in token may be valid for at most {self._web.handover_seconds} s "
                "(exp - iat)",
            )
        self._spend(token, float(expires))
        return Session(
            principal=principal,
            expires_at=int(self._clock()) + self._web.session_seconds,
            nonce=secrets.token_urlsafe(18),
        )

    def _spend(self, token: str, expires: float) -> None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            for key in [k for k, until in self._used.items() if until < now]:
                del self._used[key]
            if digest in self._used:
                raise AuthError(
                    "token_reused",
                    "this sign-in link was used already; open the page from the application again",
                )
            self._used[digest] = expires + self._api.jwt_leeway_seconds

    def encode(self, session: Session) -> str:
        p = session.principal
        payload = {
            "v": 1,
            "sub": p.subject,
            "role": p.role,
            "tid": str(p.tenant_id) if p.tenant_id is not None else None,
            "iss": p.issuer,
            "exp": session.expires_at,
            "n": session.nonce,
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._sign(b'session.' + body.encode()))}"

    def decode(self, cookie: str | None) -> Session | None:
        """The session of a cookie value, or None (absent, forged, expired or malformed)."""
        if not cookie or len(cookie) > MAX_COOKIE_LENGTH or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        try:
            supplied = _unb64(signature)
            expected = self._sign(b"session." + body.encode())
            if not hmac.compare_digest(supplied, expected):
                return None
            payload = json.loads(_unb64(body))
        except (binascii.Error, ValueError, UnicodeError):
            return None
        if not isinstance(payload, dict) or payload.get("v") != 1:
            return None
        expires = payload.get("exp")
        if not isinstance(expires, int) or expires <= self._clock():
            return None
        tenant = payload.get("tid")
        try:
            principal = Principal(
                subject=str(payload["sub"]),
                role=str(payload["role"]),
                tenant_id=UUID(tenant) if isinstance(tenant, str) else None,
                issuer=str(payload["iss"]),
            )
        except (KeyError, ValueError):
            return None
        return Session(principal=principal, expires_at=expires, nonce=str(payload.get("n", "")))

    def csrf_token(self, session: Session) -> str:
        return _b64(self._sign(b"csrf." + session.nonce.encode()))

    def csrf_ok(self, session: Session, supplied: str | None) -> bool:
        if not supplied or not session.nonce:
            return False
        return hmac.compare_digest(supplied.encode(), self.csrf_token(session).encode())

    def _sign(self, data: bytes) -> bytes:
        return hmac.new(self._web.session_key, data, hashlib.sha256).digest()


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unverified_claims(token: str) -> dict[str, Any]:
    # Read only after verify_token accepted the signature: the claims are the verified ones.
    try:
        claims = json.loads(_unb64(token.split(".")[1]))
    except (IndexError, binascii.Error, ValueError, UnicodeError):
        return {}
    return claims if isinstance(claims, dict) else {}
