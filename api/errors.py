"""How failures become HTTP answers: one status table, one JSON error shape.

Every error is `{"error": {"code", "message", "field"}}`. The project's errors
(core.errors.PortalDomainsError) map to a status by their stable code, or by
their kind when the code has no entry of its own; nothing here knows their
classes beyond the base.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import AuthError
from api.models import ErrorDetail, ErrorResponse
from core.errors import ErrorKind, PortalDomainsError
from core.text import safe_text

logger = logging.getLogger(__name__)

HTTP_STATUS_BY_CODE: dict[str, int] = {
    "hook_failed": 503,
}
HTTP_STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID_INPUT: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.REFUSED: 409,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.FAILED: 500,
}
# Which request field an invalid-input code is about (for the form to highlight).
FIELD_BY_CODE: dict[str, str] = {"invalid_tenant_id": "tenant_id"}


def http_status_for(err: PortalDomainsError) -> int:
    return HTTP_STATUS_BY_CODE.get(err.code, HTTP_STATUS_BY_KIND[err.kind])


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


_UNAVAILABLE_DEFAULT = "a service this call needs is unavailable; try again (reference {reference})"
_UNAVAILABLE_MESSAGES = {
    "hook_failed": (
        "the change is saved, but its processing could not be started; repeat the call "
        "(reference {reference})"
    ),
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    # Messages may quote the caller's input: escaped, so the answer can always be encoded.
    body = ErrorResponse(error=ErrorDetail(code=code, message=safe_text(message), field=field))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


# Told of each request refused for its body or query (code, message), to audit it.
RefusalHook = Callable[[Request, str, str], None]


def install_error_handlers(app: FastAPI, *, on_refused: RefusalHook | None = None) -> None:
    async def refused(request: Request, code: str, message: str) -> None:
        if on_refused is not None:
            await run_in_threadpool(on_refused, request, code, message)

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(
            exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers
        )

    async def on_auth_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        return unauthorized(exc)

    async def on_project_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PortalDomainsError)
        status = http_status_for(exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        field = FIELD_BY_CODE.get(exc.code)
        if field is None and exc.kind is ErrorKind.INVALID_INPUT:
            field = "domain"  # hostname reason codes: the only other invalid input in a body
        message = exc.message
        if status >= 500:
            # The detail (Temporal's address or namespace, a driver's text) is for
            # operators: it goes to the log under a reference the caller can quote.
            reference = uuid.uuid4().hex[:12]
            logger.error("%s (reference %s): %s", exc.code, reference, exc.message)
            message = _UNAVAILABLE_MESSAGES.get(exc.code, _UNAVAILABLE_DEFAULT).format(
                reference=reference
            )
        return error_response(status, exc.code, message, field=field, headers=headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if request.method == "POST" and not _is_json(request.headers.get("content-type")):
            errors = exc.errors()
            if errors and list(errors[0].get("loc", ()))[:1] == ["body"]:
                message = "send the body as JSON with Content-Type: application/json"
                await refused(request, "unsupported_media_type", message)
                return error_response(415, "unsupported_media_type", message, field="body")
        code, message, field = _validation_error(exc.errors())
        await refused(request, code, message)
        return error_response(422, code, message, field=field)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (bytes that are not JSON): a
            # malformed body, answered like every other invalid body.
            message = "the body is not valid JSON"
            await refused(request, "malformed_body", message)
            return error_response(422, "malformed_body", message, field="body")
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})
        )

    handlers: Sequence[tuple[type[Exception], Callable[[Request, Exception], Any]]] = (
        (ApiError, on_api_error),
        (AuthError, on_auth_error),
        (PortalDomainsError, on_project_error),
        (RequestValidationError, on_validation_error),
        (StarletteHTTPException, on_http_error),
    )
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _validation_error(errors: Sequence[Any]) -> tuple[str, str, str | None]:
    """The code, message and field of a 422 for FastAPI's validation errors."""
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ())]
    message = str(first.get("msg", "invalid request"))
    if loc[:2] == ["query", "tenant_id"]:
        return (
            "invalid_tenant_id",
            "tenant_id must be a UUID (8-4-4-4-12 hex digits)",
            "tenant_id",
        )
    if loc and loc[0] == "body":
        where = ".".join(loc[1:]) or "body"
        if first.get("type") == "json_invalid":
            where, message = "body", "not valid JSON"
        return (
            "invalid_body",
            f'{where}: {message}; expected a JSON object {{"domain": "portal.example.com"}}',
            "domain" if loc[1:2] == ["domain"] else "body",
        )
    return "invalid_request", f"{'.'.join(loc)}: {message}", None


def unauthorized(exc: AuthError) -> JSONResponse:
    # RFC 6750 3: tell the client which scheme and what was wrong.
    challenge = 'Bearer realm="portal-domains"'
    if exc.code != "missing_token":
        challenge += ', error="invalid_token"'
    return error_response(401, exc.code, exc.message, headers={"WWW-Authenticate": challenge})
