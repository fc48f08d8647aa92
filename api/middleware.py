"""ASGI middleware: authenticate every /api/ request first; body limit, no-store, catch-all 500."""

from __future__ import annotations

import logging
from uuid import uuid4

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import AuthError, authenticate
from api.errors import error_response, unauthorized
from api.settings import ApiSettings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
PRINCIPAL_KEY = "portal_domains.principal"


class Authenticate:
    """Verify the bearer token of every /api/ request before routing or body parsing."""

    def __init__(self, app: ASGIApp, *, api: ApiSettings) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api/"):
            await self.app(scope, receive, send)
            return
        header = header_value(scope, b"authorization")
        try:
            scope[PRINCIPAL_KEY] = authenticate(header, self.api)
        except AuthError as exc:
            await unauthorized(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Guard:
    """Outermost: body size limit, `Cache-Control: no-store`, and the catch-all 500.

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

        async def send_no_store(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"cache-control", b"no-store"))
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


def header_value(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
