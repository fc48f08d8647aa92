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

Errors are always `{"error": {"code", "message", "field"}}` (api.errors); an
unexpected exception is logged with a reference and answered with 500
internal_error carrying only that reference (api.middleware).
"""

from __future__ import annotations

from fastapi import FastAPI

from api.deps import Gatekeeper
from api.errors import install_error_handlers
from api.middleware import Authenticate, Guard
from api.ratelimit import TenantRateLimiter
from api.routes import DOMAIN_PATH, router
from api.settings import ApiSettings
from core.settings import Settings
from db.service import DomainService
from stack.config import load_stack_config

__all__ = ["DOMAIN_PATH", "create_app"]


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
    # The environment's stack config says whether tenants also delegate
    # _acme-challenge (DNS-01); a bad file stops the server here, not per request.
    stack = load_stack_config(settings.environment, root=settings.stack_config_dir)
    app.state.gatekeeper = Gatekeeper(
        settings=settings, api=api, service=service, limiter=limiter, stack=stack
    )
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(Authenticate, api=api)
    app.add_middleware(Guard)
    return app
