"""ASGI middleware: authenticate every /api/ request first; body limit, security headers,
catch-all 500."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import AuthError, authenticate
from api.errors import error_response, unauthorized
from api.refusals import Refusal, RefusalAuditor, Requester
from api.settings import ApiSettings
from db.service import PLATFORM_LOG

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
PRINCIPAL_KEY = "portal_domains.principal"
# JSON answers load nothing and may not be framed; a page that needs more (the
# /docs page) sets its own Content-Security-Policy.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=31536000"
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class Authenticate:
    """Verify the bearer token of every /api/ request before routing or body parsing.

    A refusal is audited in the platform log (never a tenant's: the token's
    claims are not trusted), attributed to the client address, collapsed and
    rate limited like every refusal.
    """

    def __init__(self, app: ASGIApp, *, api: ApiSettings, refusals: RefusalAuditor) -> None:
        self.app = app
        self.api = api
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api/"):
            await self.app(scope, receive, send)
            return
        header = header_value(scope, b"authorization")
        try:
            scope[PRINCIPAL_KEY] = authenticate(header, self.api)
        except AuthError as exc:
            client = scope.get("client")
            refusal = Refusal(
                caller=Requester.anonymous(str(client[0]) if client else None),
                tenant_id=PLATFORM_LOG,
                action="authenticate",
                code=exc.code,
                message=exc.message,
            )
            await run_in_threadpool(self.refusals.record, refusal)
            await unauthorized(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Guard:
    """Outermost: body size limit, `Cache-Control: no-store`, security headers, the catch-all 500.

    Every answer carries X-Content-Type-Options, X-Frame-Options,
    Referrer-Policy and a Content-Security-Policy (unless the route set its
    own), and Strict-Transport-Security when the request came over TLS (the
    scheme uvicorn reports: forwarded headers count only from configured
    proxies). A `Location` is made relative: it is never built from the
    client's Host header.

    The catch-all logs the exception with a reference and answers with that
    reference only: no exception text or trace reaches the client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = header_value(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await error_response(
                413,
                "payload_too_large",
                f"the request body must be at most {MAX_BODY_BYTES} bytes",
            )(scope, receive, send)
            return
        started = False
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise StarletteHTTPException(
                        413, f"the request body must be at most {MAX_BODY_BYTES} bytes"
                    )
            return message

        secure = scope.get("scheme") == "https"

        async def send_no_store(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = secure_headers(list(message.get("headers", [])), tls=secure)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_no_store)
        except Exception:
            reference = uuid4().hex[:12]
            logger.exception(
                "unhandled error in %s %s (reference %s)",
                scope.get("method"),
                scope.get("path"),
                reference,
            )
            if started:
                return  # the status line is out; the client sees a truncated response
            await error_response(
                500,
                "internal_error",
                f"internal error (reference {reference}); it has been logged",
            )(scope, receive, send_no_store)


def secure_headers(headers: list[tuple[bytes, bytes]], *, tls: bool) -> list[tuple[bytes, bytes]]:
    present = {bytes(name).lower() for name, _ in headers}
    out = [
        (name, relative_location(value) if bytes(name).lower() == b"location" else value)
        for name, value in headers
    ]
    out.append((b"cache-control", b"no-store"))
    out.extend(header for header in SECURITY_HEADERS if header[0] not in present)
    if b"content-security-policy" not in present:
        out.append((b"content-security-policy", DEFAULT_CSP.encode()))
    if tls:
        out.append((b"strict-transport-security", HSTS.encode()))
    return out


def relative_location(value: bytes) -> bytes:
    """`http://<any host>/path?q` -> `/path?q`: redirects stay on the host the client used."""
    parts = urlsplit(bytes(value).decode("latin-1"))
    if not parts.scheme and not parts.netloc:
        return value
    # One leading slash: `//host` would be a redirect to another host again.
    path = "/" + parts.path.lstrip("/")
    return urlunsplit(("", "", path, parts.query, parts.fragment)).encode("latin-1")


def header_value(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
