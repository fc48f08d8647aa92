"""The FastAPI application: `/api/settings/client-portal/domain` around DomainService.

Every request under /api/ is authenticated first (401 before anything else).
Then, per operation: the target tenant is the caller's own, or `?tenant_id=`
(required for platform operators); RBAC decides (403); mutations are refused
in the community edition (403 edition_not_supported) and rate limited per
target tenant (429 with Retry-After). Each refusal of a mutation writes an
audit row (`outcome=denied`, actor `user:<sub>`); the service audits the rest.

GET of a tenant without a domain returns 200 with `status: null` (the settings
page's "no domain yet" state, with the canonical host and DNS guidance), not a
404. Refresh and DELETE of a tenant without a domain are 404 domain_not_found.

Errors are always `{"error": {"code", "message", "field"}}`; an unexpected
exception is logged with a reference and answered with 500 internal_error
carrying only that reference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn
from uuid import UUID, uuid4

from fastapi import Depends, FastAPI, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.canonical import TenantIdError, canonical_host, parse_tenant_id, prefix_candidates
from core.guidance import guidance_for
from core.hostnames import HostnameError
from db.errors import DomainError
from db.service import MAX_AUDITED_INPUT, DomainAction, DomainNotFound, DomainService, DomainView
from reconciler.api.auth import AuthError, Principal, authenticate
from reconciler.api.models import (
    DomainRequestBody,
    DomainStatusResponse,
    ErrorDetail,
    ErrorResponse,
    GuidanceBody,
)
from reconciler.api.ratelimit import TenantRateLimiter
from reconciler.api.rbac import ApiAction, decide
from reconciler.api.settings import ApiSettings
from reconciler.settings import Settings

logger = logging.getLogger(__name__)

DOMAIN_PATH = "/api/settings/client-portal/domain"
MAX_BODY_BYTES = 16 * 1024
_PRINCIPAL_KEY = "portal_domains.principal"

_DOMAIN_ERROR_STATUS: dict[str, int] = {
    "domain_already_claimed": 409,
    "domain_not_found": 404,
    "domain_disabled": 409,
    "concurrent_update": 409,
    "stale_status": 409,
    "hook_failed": 503,
}

_SERVICE_ACTION: dict[ApiAction, DomainAction] = {
    ApiAction.REQUEST: DomainAction.REQUEST,
    ApiAction.REFRESH: DomainAction.REFRESH,
    ApiAction.DISABLE: DomainAction.DISABLE,
}


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


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, field=field))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _doc("Missing, malformed, expired or wrongly signed bearer token"),
    403: _doc("RBAC refused the action (forbidden) or the edition lacks it"),
    413: _doc("Request body larger than 16 KiB"),
    422: _doc("Invalid tenant_id, request body or hostname (code = reason)"),
    500: _doc("Unexpected error; the message carries a log reference only"),
}
_MUTATION_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH_ERRORS,
    429: _doc("Too many mutations for this tenant; see the Retry-After header"),
    503: _doc("Saved, but the reconciler could not be started: repeat the call"),
}

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT with sub, role, tenant_id (tenant roles), aud, iss and exp",
)


def tenant_query(
    request: Request,
    tenant_id: Annotated[
        UUID | None,
        Query(
            description=(
                "Target tenant. Required for platform operators; tenant roles may only name "
                "their own tenant (the default)."
            )
        ),
    ] = None,
) -> UUID | None:
    # A misspelt parameter (?tenant=...) must not silently mean "my own tenant".
    unknown = sorted(set(request.query_params) - {"tenant_id"})
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown query parameter {unknown[0][:64]!r}; the only one accepted is tenant_id",
            field=unknown[0][:64],
        )
    if len(request.query_params.getlist("tenant_id")) > 1:
        raise ApiError(422, "invalid_tenant_id", "give tenant_id once", field="tenant_id")
    return tenant_id


TenantQuery = Annotated[UUID | None, Depends(tenant_query)]


def principal_of(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    # Set by _Authenticate before routing; the Security parameter documents the
    # scheme in OpenAPI.
    principal = request.scope.get(_PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise AuthError("missing_token", "send an Authorization: Bearer <token> header")
    return principal


# Module level: with postponed annotations FastAPI resolves these names in the
# module's globals, not in create_app's locals.
Caller = Annotated[Principal, Security(principal_of)]


def create_app(
    *,
    settings: Settings,
    api: ApiSettings,
    service: DomainService,
    rate_limiter: TenantRateLimiter | None = None,
) -> FastAPI:
    limiter = (
        rate_limiter if rate_limiter is not None else TenantRateLimiter(api.mutations_per_minute)
    )
    app = FastAPI(
        title="Portal custom domains",
        version="1",
        description=(
            "Vanity hostnames for the client portal: status, request, refresh and removal of "
            "the caller's tenant's domain. Authenticate with `Authorization: Bearer <JWT>`."
        ),
    )

    def target_of(principal: Principal, tenant_id: UUID | None) -> UUID | None:
        if tenant_id is not None:
            try:
                return parse_tenant_id(tenant_id)
            except TenantIdError as exc:
                raise ApiError(422, exc.code, str(exc), field="tenant_id") from None
        if principal.role == api.roles.operator:
            raise ApiError(
                422,
                "tenant_id_required",
                "platform operators must name the tenant: ?tenant_id=<uuid>",
                field="tenant_id",
            )
        return principal.tenant_id

    def authorize(
        principal: Principal,
        action: ApiAction,
        tenant_id: UUID | None,
        *,
        domain: str | None = None,
    ) -> UUID:
        target = target_of(principal, tenant_id)
        decision = decide(principal.role, action, principal.tenant_id, target, roles=api.roles)
        if not decision.allowed or target is None:
            deny(principal, action, target, 403, "forbidden", decision.reason, domain=domain)
        if not action.mutates:
            return target
        if not api.custom_domains:
            deny(
                principal,
                action,
                target,
                403,
                "edition_not_supported",
                "custom portal domains need the Enterprise edition; this server runs the "
                "community edition, where the portal is served on its canonical host only",
                domain=domain,
            )
        rate = limiter.acquire(target)
        if not rate.allowed:
            deny(
                principal,
                action,
                target,
                429,
                "rate_limited",
                f"at most {api.mutations_per_minute} changes per tenant per minute; retry in "
                f"{rate.retry_after} s",
                domain=domain,
                headers={"Retry-After": str(rate.retry_after)},
            )
        return target

    def deny(
        principal: Principal,
        action: ApiAction,
        target: UUID | None,
        status: int,
        code: str,
        message: str,
        *,
        domain: str | None,
        headers: dict[str, str] | None = None,
    ) -> NoReturn:
        service_action = _SERVICE_ACTION.get(action)
        if service_action is not None and target is not None:
            service.audit_denied(
                target,
                service_action,
                principal.actor,
                domain=domain[:MAX_AUDITED_INPUT] if domain is not None else None,
                reason=f"{code}: {message}",
            )
        elif service_action is not None:
            # No tenant to attribute the attempt to (a tenant role without tenant_id).
            logger.warning("%s by %s refused without a tenant: %s", action, principal.actor, code)
        raise ApiError(status, code, message, headers=headers)

    def current(tenant: UUID) -> DomainView | None:
        try:
            return service.get(tenant)
        except DomainNotFound:
            return None

    def respond(tenant: UUID, view: DomainView | None) -> DomainStatusResponse:
        custom = api.custom_domains
        if view is not None:
            canonical = view.canonical_host
        else:
            canonical = canonical_host(prefix_candidates(tenant)[0], settings.base_domain)
        shown = view if custom else None
        guidance = guidance_for(
            shown.status if shown is not None else None,
            domain=shown.domain if shown is not None else None,
            canonical_host=canonical,
            custom_domains=custom,
        )
        return DomainStatusResponse(
            tenant_id=tenant,
            edition=api.edition,
            custom_domains=custom,
            domain=shown.domain if shown is not None else None,
            canonical_host=canonical,
            canonical_host_assigned=view is not None,
            status=shown.status if shown is not None else None,
            status_message=shown.status_message if shown is not None else None,
            last_checked_at=shown.last_checked_at if shown is not None else None,
            updated_at=shown.updated_at if shown is not None else None,
            guidance=GuidanceBody.of(guidance),
        )

    @app.get(
        DOMAIN_PATH,
        response_model=DomainStatusResponse,
        summary="The tenant's portal domain, its status and what to do next",
        responses=_AUTH_ERRORS,
    )
    def get_domain(caller: Caller, tenant_id: TenantQuery) -> DomainStatusResponse:
        target = authorize(caller, ApiAction.READ, tenant_id)
        return respond(target, current(target))

    @app.post(
        DOMAIN_PATH,
        response_model=DomainStatusResponse,
        summary="Request a vanity hostname (replaces a different one; repeating is a no-op)",
        responses={
            200: {"description": "Already requested (no-op) or replaced the previous hostname"},
            201: {"model": DomainStatusResponse, "description": "First request of the tenant"},
            **_MUTATION_ERRORS,
            409: _doc("Another tenant holds the hostname, or concurrent changes: retry"),
            415: _doc("The body is not sent as application/json"),
        },
    )
    def request_domain(
        caller: Caller,
        body: DomainRequestBody,
        response: Response,
        tenant_id: TenantQuery,
    ) -> DomainStatusResponse:
        target = authorize(caller, ApiAction.REQUEST, tenant_id, domain=body.domain)
        before = current(target)
        view = service.request(target, body.domain, caller.actor)
        if before is None:
            response.status_code = 201
            response.headers["Location"] = DOMAIN_PATH
        return respond(target, view)

    @app.post(
        f"{DOMAIN_PATH}/refresh",
        response_model=DomainStatusResponse,
        summary="Re-check now; a failed domain restarts its registration",
        responses={
            **_MUTATION_ERRORS,
            404: _doc("The tenant has no domain (domain_not_found)"),
            409: _doc("The domain is disabled: request it again instead (domain_disabled)"),
        },
    )
    def refresh_domain(caller: Caller, tenant_id: TenantQuery) -> DomainStatusResponse:
        target = authorize(caller, ApiAction.REFRESH, tenant_id)
        return respond(target, service.refresh(target, caller.actor))

    @app.delete(
        DOMAIN_PATH,
        response_model=DomainStatusResponse,
        summary="Disable the domain (its certificate and routing are removed); idempotent",
        responses={
            **_MUTATION_ERRORS,
            404: _doc("The tenant has no domain (domain_not_found)"),
            409: _doc("Concurrent changes: retry (concurrent_update)"),
        },
    )
    def disable_domain(caller: Caller, tenant_id: TenantQuery) -> DomainStatusResponse:
        target = authorize(caller, ApiAction.DISABLE, tenant_id)
        return respond(target, service.disable(target, caller.actor))

    _install_error_handlers(app)
    app.add_middleware(_Authenticate, api=api)
    app.add_middleware(_Guard)
    return app


# --------------------------------------------------------------------- errors


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(
            exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers
        )

    async def on_auth_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        return _unauthorized(exc)

    async def on_hostname_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HostnameError)
        return error_response(422, exc.code, exc.message, field="domain")

    async def on_domain_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        status = _DOMAIN_ERROR_STATUS.get(exc.code, 409)
        headers = {"Retry-After": "5"} if status == 503 else None
        return error_response(status, exc.code, exc.message, headers=headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if request.method == "POST" and not _is_json(request.headers.get("content-type")):
            errors = exc.errors()
            if errors and list(errors[0].get("loc", ()))[:1] == ["body"]:
                return error_response(
                    415,
                    "unsupported_media_type",
                    "send the body as JSON with Content-Type: application/json",
                    field="body",
                )
        return _validation_response(exc.errors())

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (bytes that are not JSON): a
            # malformed body, answered like every other invalid body.
            return error_response(422, "malformed_body", "the body is not valid JSON", field="body")
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
        (HostnameError, on_hostname_error),
        (DomainError, on_domain_error),
        (RequestValidationError, on_validation_error),
        (StarletteHTTPException, on_http_error),
    )
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)


def _unauthorized(exc: AuthError) -> JSONResponse:
    # RFC 6750 3: tell the client which scheme and what was wrong.
    challenge = 'Bearer realm="portal-domains"'
    if exc.code != "missing_token":
        challenge += ', error="invalid_token"'
    return error_response(401, exc.code, exc.message, headers={"WWW-Authenticate": challenge})


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _validation_response(errors: Sequence[Any]) -> JSONResponse:
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ())]
    message = str(first.get("msg", "invalid request"))
    if loc[:2] == ["query", "tenant_id"]:
        return error_response(
            422,
            "invalid_tenant_id",
            "tenant_id must be a UUID (8-4-4-4-12 hex digits)",
            field="tenant_id",
        )
    if loc and loc[0] == "body":
        where = ".".join(loc[1:]) or "body"
        if first.get("type") == "json_invalid":
            where, message = "body", "not valid JSON"
        return error_response(
            422,
            "invalid_body",
            f'{where}: {message}; expected a JSON object {{"domain": "portal.example.com"}}',
            field="domain" if loc[1:2] == ["domain"] else "body",
        )
    return error_response(422, "invalid_request", f"{'.'.join(loc)}: {message}")


# ------------------------------------------------------------------ middleware


class _Authenticate:
    """Verify the bearer token of every /api/ request before routing or body parsing."""

    def __init__(self, app: ASGIApp, *, api: ApiSettings) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api/"):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        try:
            scope[_PRINCIPAL_KEY] = authenticate(header, self.api)
        except AuthError as exc:
            await _unauthorized(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _Guard:
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
        length = _header(scope, b"content-length")
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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
