"""The FastAPI application: `/api/settings/client-portal/domain` around DomainService.

Every request under /api/ is authenticated first (401 before anything else).
Then, per operation: the target tenant is the caller's own, or `?tenant_id=`
(required for platform operators); RBAC decides (403); mutations are refused
in the community edition (403 edition_not_supported) and rate limited per
target tenant (429 with Retry-After), after a per-caller limit on attempts.
Each refusal (401s, refused reads and bodies too) writes an audit row
(`outcome=denied`, the caller's tenant, role and issuer in its detail),
collapsed and bounded per caller (api.refusals); the service audits the rest.

Every answer carries security headers (api.middleware.Guard). The OpenAPI
document and the /docs page (plain HTML from this server, no third-party
assets) are served unless turned off, and are off in prod unless turned on.
Trailing-slash redirects are off: no redirect is built from the Host header.

GET of a tenant without a domain returns 200 with `status: null` (the settings
page's "no domain yet" state, with the canonical host and DNS guidance), not a
404. Refresh and DELETE of a tenant without a domain are 404 domain_not_found.

Errors are always `{"error": {"code", "message", "field"}}` (api.errors); an
unexpected exception is logged with a reference and answered with 500
internal_error carrying only that reference (api.middleware).
"""

from __future__ import annotations

import hashlib
import html
from base64 import b64encode
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from api.auth import Principal
from api.deps import Gatekeeper
from api.errors import install_error_handlers
from api.middleware import PRINCIPAL_KEY, Authenticate, Guard
from api.ratelimit import RateLimiter, TenantRateLimiter
from api.refusals import RefusalAuditor
from api.routes import DOMAIN_PATH, router
from api.settings import ApiSettings
from api.web import WebSettings, install_web
from core.settings import Settings
from db.service import DomainService
from stack.config import load_stack_config

__all__ = ["DOMAIN_PATH", "create_app"]

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"


def create_app(
    *,
    settings: Settings,
    api: ApiSettings,
    service: DomainService,
    rate_limiter: TenantRateLimiter | None = None,
    refusals: RefusalAuditor | None = None,
    web: WebSettings | None = None,
) -> FastAPI:
    limiter = (
        rate_limiter if rate_limiter is not None else TenantRateLimiter(api.mutations_per_minute)
    )
    auditor = (
        refusals
        if refusals is not None
        else RefusalAuditor(
            service, per_minute=api.caller_rate_limit, window_seconds=api.audit_window_seconds
        )
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # Counted refusals are written when their window closes; do not lose them.
        auditor.flush()

    docs = api.docs_enabled(settings.environment)
    app = FastAPI(
        title="Portal custom domains",
        version="1",
        description=(
            "Vanity hostnames for the client portal: status, request, refresh and removal of "
            "the caller's tenant's domain. Authenticate with `Authorization: Bearer <JWT>`."
        ),
        # FastAPI's own pages load Swagger UI / ReDoc from a CDN: /docs is ours.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url=OPENAPI_PATH if docs else None,
        # A slash redirect would be built from the client's Host header.
        redirect_slashes=False,
        lifespan=lifespan,
    )
    # The environment's stack config says whether tenants also delegate
    # _acme-challenge (DNS-01); a bad file stops the server here, not per request.
    stack = load_stack_config(settings.environment, root=settings.stack_config_dir)
    gate = Gatekeeper(
        settings=settings,
        api=api,
        service=service,
        limiter=limiter,
        stack=stack,
        callers=RateLimiter(api.caller_rate_limit),
        refusals=auditor,
    )
    app.state.gatekeeper = gate
    app.include_router(router)
    # The settings page (/portal/...): session cookie, not bearer tokens (api.web).
    install_web(app, api=api, web=web)
    if docs:
        _add_docs_page(app)

    def on_refused(request: Request, code: str, message: str) -> None:
        principal = request.scope.get(PRINCIPAL_KEY)
        if isinstance(principal, Principal):
            gate.refused_request(
                principal,
                request.method,
                request.url.path,
                request.query_params.get("tenant_id"),
                code,
                message,
            )

    install_error_handlers(app, on_refused=on_refused)
    app.add_middleware(Authenticate, api=api, refusals=auditor)
    app.add_middleware(Guard)
    return app


_DOCS_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "code{background:#f3f3f3;padding:0 .2em}h2{margin-top:2em}"
)
_DOCS_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + b64encode(hashlib.sha256(_DOCS_STYLE.encode()).digest()).decode()
    + "'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _add_docs_page(app: FastAPI) -> None:
    @app.get(DOCS_PATH, include_in_schema=False, response_class=HTMLResponse)
    def docs_page() -> HTMLResponse:
        return HTMLResponse(
            render_docs(app.openapi()), headers={"Content-Security-Policy": _DOCS_CSP}
        )


def render_docs(document: dict[str, Any]) -> str:
    """The OpenAPI document as one self-contained page: no script, no external asset."""
    e = html.escape
    info = document.get("info", {})
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{e(str(info.get('title', 'API')))}</title>",
        f"<style>{_DOCS_STYLE}</style></head><body>",
        f"<h1>{e(str(info.get('title', 'API')))}</h1>",
        f"<p>{e(str(info.get('description', '')))}</p>",
        f'<p>The machine-readable document: <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a></p>',
    ]
    for path, item in document.get("paths", {}).items():
        for method, spec in item.items():
            parts.append(f"<h2><code>{e(method.upper())} {e(path)}</code></h2>")
            parts.append(f"<p>{e(str(spec.get('summary', '')))}</p>")
            params = spec.get("parameters", [])
            if params:
                parts.append("<p>Parameters:</p><ul>")
                parts.extend(
                    f"<li><code>{e(str(p.get('name')))}</code> ({e(str(p.get('in')))}): "
                    f"{e(str(p.get('description', '')))}</li>"
                    for p in params
                )
                parts.append("</ul>")
            parts.append("<p>Responses:</p><ul>")
            parts.extend(
                f"<li><code>{e(str(status))}</code> {e(str(response.get('description', '')))}</li>"
                for status, response in spec.get("responses", {}).items()
            )
            parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)
