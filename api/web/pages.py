"""The tenant's Client Portal domain settings page: handover, page, status poll, actions.

- GET  /portal/session?token=<JWT>      the host application's handover -> session cookie
- GET  /portal/settings/domain          the page (server-rendered; ?tenant_id= for operators)
- GET  /portal/settings/domain/status   a small JSON answer the page polls
- POST /portal/settings/domain          submit (request or replace) a hostname
- POST /portal/settings/domain/refresh  re-check now; on a failed domain, retry registration
- POST /portal/settings/domain/remove   disable the domain

Every action runs the API's own path: Gatekeeper.authorize (per-caller
limit, RBAC, edition, per-tenant rate limit, each refusal audited), then the
same DomainService method with the same actor (`user:<sub>`, or
`operator:<sub>`). A POST without a valid session is refused (401), one
without the session's CSRF token too (403, audited as `csrf_failed`).

Forms work without JavaScript (POST, then a 303 to the page with a notice
code, or the page again with the error in words). static/app.js sends the
same forms with fetch (`Accept: application/json`) and shows toasts.

These paths are outside /api/, so the bearer-token middleware
(api.middleware.Authenticate) does not apply: the session cookie does.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.auth import AuthError, Principal
from api.deps import Gatekeeper
from api.errors import ApiError, http_status_for
from api.rbac import ApiAction, decide
from api.refusals import Refusal, Requester
from api.routes import current, respond
from api.settings import ApiSettings
from api.web.session import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, Session, Sessions
from api.web.settings import WebSettings
from api.web.view import NOTICES, error_sentence, treatment
from core.canonical import TenantIdError, parse_tenant_id
from core.errors import PortalDomainsError
from core.status import DomainStatus
from db.service import PLATFORM_LOG

logger = logging.getLogger(__name__)

PORTAL_PREFIX = "/portal"
SESSION_PATH = "/portal/session"
PAGE_PATH = "/portal/settings/domain"
STATUS_PATH = PAGE_PATH + "/status"
REFRESH_PATH = PAGE_PATH + "/refresh"
REMOVE_PATH = PAGE_PATH + "/remove"
STATIC_PATH = "/portal/static"
CONSOLE_PATH = "/console"
_HERE = Path(__file__).parent
_FAILED = frozenset({DomainStatus.DNS_FAILED, DomainStatus.CERTIFICATE_FAILED})


@dataclass(frozen=True, kw_only=True)
class Web:
    """What the pages need, built once per application (app.state.web)."""

    settings: WebSettings
    sessions: Sessions
    templates: Environment

    @property
    def csp(self) -> str:
        # No inline script or style anywhere: everything comes from /portal/static.
        return (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {' '.join(self.settings.frame_ancestors)}"
        )


def install_pages(app: FastAPI, *, api: ApiSettings, web: WebSettings | None = None) -> None:
    """Add the settings page and the static files to `app` (after app.state.gatekeeper)."""
    settings = web if web is not None else WebSettings.derived(api)
    app.state.web = Web(
        settings=settings,
        sessions=Sessions(settings, api),
        templates=Environment(
            loader=FileSystemLoader(_HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        ),
    )
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=_HERE / "static"), name="portal-static")


router = APIRouter(include_in_schema=False)


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def gate_of(request: Request) -> Gatekeeper:
    gate: Gatekeeper = request.app.state.gatekeeper
    return gate


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    web = _web(request)
    body = web.templates.get_template(template).render(static=STATIC_PATH, **context)
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": web.csp})


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _refuse_anonymous(request: Request, action: str, code: str, message: str) -> None:
    """Audit a refusal of a caller without a session, in the platform log (like a 401)."""
    gate_of(request).refusals.record(
        Refusal(
            caller=Requester.anonymous(_client(request)),
            tenant_id=PLATFORM_LOG,
            action=action,
            code=code,
            message=message,
        )
    )


# ---------------------------------------------------------------- handover


@router.get(SESSION_PATH)
def handover(request: Request, token: str | None = None) -> Response:
    web = _web(request)
    try:
        session = web.sessions.handover(token)
    except AuthError as exc:
        _refuse_anonymous(request, "authenticate", exc.code, exc.message)
        return render(
            request,
            "signed_out.html",
            401,
            title="Sign-in failed",
            message=f"The sign-in link was refused: {exc.message}.",
        )
    # Operators land on the console: the page needs ?tenant_id= for them.
    landing = CONSOLE_PATH if gate_of(request).is_operator(session.principal) else PAGE_PATH
    response = RedirectResponse(landing, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        web.sessions.encode(session),
        max_age=web.sessions.max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def session_of(request: Request) -> Session | None:
    return _web(request).sessions.decode(request.cookies.get(SESSION_COOKIE))


def signed_out(request: Request) -> HTMLResponse:
    return render(
        request,
        "signed_out.html",
        401,
        title="Signed out",
        message=(
            "Your session has ended or you are not signed in. Open the domain settings from "
            "the application again."
        ),
    )


def _tenant_param(raw: str | None) -> UUID | None:
    if not raw:
        return None
    return parse_tenant_id(raw)


# ---------------------------------------------------------------- the page


def _fingerprint(state: Any) -> str:
    return hashlib.sha256(state.model_dump_json().encode()).hexdigest()[:16]


def _render_page(
    request: Request,
    session: Session,
    target: UUID,
    *,
    tenant_param: UUID | None,
    notice: str | None = None,
    error: str | None = None,
    error_field: str | None = None,
    entered: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    gate = gate_of(request)
    web = _web(request)
    state = respond(gate, target, current(gate, target))
    p = session.principal
    may_change = (
        state.custom_domains
        and decide(p.role, ApiAction.REQUEST, p.tenant_id, target, roles=gate.api.roles).allowed
    )
    query = f"?{urlencode({'tenant_id': str(tenant_param)})}" if tenant_param else ""
    return render(
        request,
        "settings_domain.html",
        status,
        title="Client portal domain",
        state=state,
        t=treatment(state),
        may_change=may_change,
        csrf=web.sessions.csrf_token(session),
        csrf_field=CSRF_FIELD,
        tenant_param=str(tenant_param) if tenant_param else None,
        notice=NOTICES.get(notice or ""),
        error=error,
        error_field=error_field,
        entered=entered,
        fingerprint=_fingerprint(state),
        poll_ms=web.settings.poll_seconds * 1000,
        urls={
            "page": PAGE_PATH + query,
            "status": STATUS_PATH + query,
            "request": PAGE_PATH + query,
            "refresh": REFRESH_PATH + query,
            "remove": REMOVE_PATH + query,
        },
    )


@router.get(PAGE_PATH)
def settings_page(
    request: Request, tenant_id: str | None = None, notice: str | None = None
) -> Response:
    session = session_of(request)
    if session is None:
        return signed_out(request)
    gate = gate_of(request)
    try:
        wanted = _tenant_param(tenant_id)
        target = gate.authorize(session.principal, ApiAction.READ, wanted)
    except TenantIdError as exc:
        return _problem(request, 422, exc.code, str(exc))
    except ApiError as exc:
        return _problem(request, exc.status, exc.code, exc.message)
    return _render_page(request, session, target, tenant_param=wanted, notice=notice)


@router.get(STATUS_PATH)
def page_status(request: Request, tenant_id: str | None = None) -> JSONResponse:
    """What the page polls: enough to know whether to re-render and whether to go on."""
    session = session_of(request)
    if session is None:
        return _json_error(401, "session_expired", "no session")
    gate = gate_of(request)
    try:
        target = gate.authorize(session.principal, ApiAction.READ, _tenant_param(tenant_id))
    except TenantIdError as exc:
        return _json_error(422, exc.code, str(exc))
    except ApiError as exc:
        return _json_error(exc.status, exc.code, exc.message)
    state = respond(gate, target, current(gate, target))
    return JSONResponse(
        {
            "status": state.status.value if state.status is not None else None,
            "polling": state.guidance.polling,
            "fingerprint": _fingerprint(state),
        }
    )


def _problem(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    return render(
        request,
        "signed_out.html",
        status,
        title="Not available",
        message=error_sentence(code, message),
    )


def _json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


# ---------------------------------------------------------------- actions


@router.post(PAGE_PATH)
def submit_domain(
    request: Request,
    domain: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    tenant_id: str | None = None,
) -> Response:
    return _act(request, ApiAction.REQUEST, csrf_token, tenant_id, domain=domain)


@router.post(REFRESH_PATH)
def refresh_domain(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    tenant_id: str | None = None,
) -> Response:
    return _act(request, ApiAction.REFRESH, csrf_token, tenant_id)


@router.post(REMOVE_PATH)
def remove_domain(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    tenant_id: str | None = None,
) -> Response:
    return _act(request, ApiAction.DISABLE, csrf_token, tenant_id)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _act(
    request: Request,
    action: ApiAction,
    csrf_token: str,
    tenant_id: str | None,
    *,
    domain: str | None = None,
) -> Response:
    json_answer = _wants_json(request)
    session = session_of(request)
    if session is None:
        message = "no valid session cookie"
        _refuse_anonymous(request, action.value, "session_expired", message)
        if json_answer:
            return _json_error(401, "session_expired", error_sentence("session_expired"))
        return signed_out(request)
    try:
        wanted = _tenant_param(tenant_id)
    except TenantIdError as exc:
        return _failure(request, session, None, 422, exc.code, str(exc), json_answer)
    supplied = csrf_token or request.headers.get(CSRF_HEADER)
    if not _web(request).sessions.csrf_ok(session, supplied):
        _refuse_csrf(request, session.principal, action, domain)
        return _failure(
            request,
            session,
            wanted,
            403,
            "csrf_failed",
            "the form's CSRF token is missing or wrong",
            json_answer,
        )
    try:
        notice = _perform(request, session, action, wanted, domain)
    except ApiError as exc:
        return _failure(
            request,
            session,
            wanted,
            exc.status,
            exc.code,
            exc.message,
            json_answer,
            entered=domain,
            headers=exc.headers,
        )
    except PortalDomainsError as exc:
        status = http_status_for(exc)
        message = exc.message
        if status >= 500:
            reference = uuid.uuid4().hex[:12]
            logger.error("%s (reference %s): %s", exc.code, reference, exc.message)
            message = f"reference {reference}"
        return _failure(
            request, session, wanted, status, exc.code, message, json_answer, entered=domain
        )
    query = {"notice": notice, **({"tenant_id": str(wanted)} if wanted else {})}
    location = f"{PAGE_PATH}?{urlencode(query)}"
    if json_answer:
        return JSONResponse({"notice": notice, "message": NOTICES[notice], "redirect": location})
    return RedirectResponse(location, status_code=303)


def _perform(
    request: Request,
    session: Session,
    action: ApiAction,
    wanted: UUID | None,
    domain: str | None,
) -> str:
    """Authorise and run `action` exactly as the REST API does; the notice code."""
    gate = gate_of(request)
    principal = session.principal
    target = gate.authorize(principal, action, wanted, domain=domain)
    actor = gate.actor_of(principal)
    before = current(gate, target)
    if action is ApiAction.REQUEST:
        view = gate.service.request(target, domain or "", actor)
        unchanged = (
            before is not None and before.domain == view.domain and before.status == view.status
        )
        return "unchanged" if unchanged else "requested"
    if action is ApiAction.REFRESH:
        gate.service.refresh(target, actor)
        return "retried" if before is not None and before.status in _FAILED else "refreshed"
    gate.service.disable(target, actor)
    return "removed"


def _refuse_csrf(
    request: Request, principal: Principal, action: ApiAction, domain: str | None
) -> None:
    gate = gate_of(request)
    caller = gate.caller_of(principal)
    gate.refusals.record(
        Refusal(
            caller=caller,
            # The caller's own log: without the token nothing says the request is theirs.
            tenant_id=caller.home,
            action=action.value,
            code="csrf_failed",
            message="the form's CSRF token is missing or wrong (a cross-site request?)",
            domain=domain,
        )
    )


def _failure(
    request: Request,
    session: Session,
    wanted: UUID | None,
    status: int,
    code: str,
    message: str,
    json_answer: bool,
    *,
    entered: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    sentence = error_sentence(code, message)
    if code == "hook_failed" or status >= 500:
        sentence = f"{error_sentence(code)} ({message})"
    field = "domain" if entered is not None and status == 422 else None
    if json_answer:
        return JSONResponse(
            {"error": {"code": code, "message": sentence, "field": field}},
            status_code=status,
            headers=headers,
        )
    gate = gate_of(request)
    p = session.principal
    try:
        target = gate.target_of(p, wanted)
    except ApiError:
        target = None
    # The page again, unless the caller may not even read it (that refusal is audited already).
    if (
        target is None
        or not decide(p.role, ApiAction.READ, p.tenant_id, target, roles=gate.api.roles).allowed
    ):
        return _problem(request, status, code, message)
    response = _render_page(
        request,
        session,
        target,
        tenant_param=wanted,
        error=sentence,
        error_field=field,
        entered=entered,
        status=status,
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
