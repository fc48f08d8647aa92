"""FastAPI dependencies: who is calling, which tenant they target, and may they.

`Gatekeeper.authorize` is the one authorisation path: target tenant, RBAC,
edition gating and the per-tenant rate limit; each refusal of a mutation is
audited (`outcome=denied`) before it is answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, NoReturn
from uuid import UUID

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import AuthError, Principal
from api.errors import ApiError
from api.middleware import PRINCIPAL_KEY
from api.ratelimit import TenantRateLimiter
from api.rbac import ApiAction, decide
from api.settings import ApiSettings
from core.canonical import TenantIdError, parse_tenant_id
from core.config import StackConfig
from core.settings import Settings
from db.service import MAX_AUDITED_INPUT, DomainAction, DomainService

logger = logging.getLogger(__name__)

_SERVICE_ACTION: dict[ApiAction, DomainAction] = {
    ApiAction.REQUEST: DomainAction.REQUEST,
    ApiAction.REFRESH: DomainAction.REFRESH,
    ApiAction.DISABLE: DomainAction.DISABLE,
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
    accepted = ("tenant_id", "limit") if request.url.path.endswith("/audit") else ("tenant_id",)
    unknown = sorted(set(request.query_params) - set(accepted))
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown query parameter {unknown[0][:64]!r}; accepted: {', '.join(accepted)}",
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
    # Set by middleware.Authenticate before routing; the Security parameter documents the
    # scheme in OpenAPI.
    principal = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise AuthError("missing_token", "send an Authorization: Bearer <token> header")
    return principal


# Module level: with postponed annotations FastAPI resolves these names in the
# module's globals, not in create_app's locals.
Caller = Annotated[Principal, Security(principal_of)]


@dataclass(frozen=True, kw_only=True)
class Gatekeeper:
    """Everything authorisation needs, built once per application."""

    settings: Settings
    api: ApiSettings
    service: DomainService
    limiter: TenantRateLimiter
    stack: StackConfig

    def target_of(self, principal: Principal, tenant_id: UUID | None) -> UUID | None:
        if tenant_id is not None:
            try:
                return parse_tenant_id(tenant_id)
            except TenantIdError as exc:
                raise ApiError(422, exc.code, str(exc), field="tenant_id") from None
        if principal.role == self.api.roles.operator:
            raise ApiError(
                422,
                "tenant_id_required",
                "platform operators must name the tenant: ?tenant_id=<uuid>",
                field="tenant_id",
            )
        return principal.tenant_id

    def authorize(
        self,
        principal: Principal,
        action: ApiAction,
        tenant_id: UUID | None,
        *,
        domain: str | None = None,
    ) -> UUID:
        target = self.target_of(principal, tenant_id)
        decision = decide(principal.role, action, principal.tenant_id, target, roles=self.api.roles)
        if not decision.allowed or target is None:
            self.deny(principal, action, target, 403, "forbidden", decision.reason, domain=domain)
        if not action.mutates:
            return target
        if not self.api.custom_domains:
            self.deny(
                principal,
                action,
                target,
                403,
                "edition_not_supported",
                "custom portal domains need the Enterprise edition; this server runs the "
                "community edition, where the portal is served on its canonical host only",
                domain=domain,
            )
        rate = self.limiter.acquire(target)
        if not rate.allowed:
            self.deny(
                principal,
                action,
                target,
                429,
                "rate_limited",
                f"at most {self.api.mutations_per_minute} changes per tenant per minute; retry in "
                f"{rate.retry_after} s",
                domain=domain,
                headers={"Retry-After": str(rate.retry_after)},
            )
        return target

    def deny(
        self,
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
            self.service.audit_denied(
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


def gatekeeper(request: Request) -> Gatekeeper:
    gate: Gatekeeper = request.app.state.gatekeeper
    return gate


Gate = Annotated[Gatekeeper, Depends(gatekeeper)]


def _target_for(action: ApiAction) -> object:
    def dependency(caller: Caller, tenant_id: TenantQuery, gate: Gate) -> UUID:
        return gate.authorize(caller, action, tenant_id)

    return Depends(dependency)


ReadTarget = Annotated[UUID, _target_for(ApiAction.READ)]
RefreshTarget = Annotated[UUID, _target_for(ApiAction.REFRESH)]
DisableTarget = Annotated[UUID, _target_for(ApiAction.DISABLE)]
AuditTarget = Annotated[UUID, _target_for(ApiAction.AUDIT)]
