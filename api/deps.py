"""FastAPI dependencies: who is calling, which tenant they target, and may they.

`Gatekeeper.authorize` is the one authorisation path: the per-caller limit on
mutation attempts (before anything is audited), target tenant, RBAC, edition
gating and the per-tenant rate limit. Each refusal, of a read too, is audited
(`outcome=denied`) through api.refusals (collapsed, within the caller's budget)
before it is answered.
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
from api.ratelimit import RateLimiter, TenantRateLimiter
from api.rbac import ApiAction, decide
from api.refusals import Refusal, RefusalAuditor, Requester
from api.settings import ApiSettings
from core.canonical import TenantIdError, parse_tenant_id
from core.config import StackConfig
from core.settings import Settings
from db.service import PLATFORM_LOG, DomainService

logger = logging.getLogger(__name__)

DOMAIN_PATH = "/api/settings/client-portal/domain"

# Actors as the audit log records them. Operators are told apart by prefix (the
# CLI's are `operator:$USER` too), so the tenant-facing read path can hide them.
USER_PREFIX = "user:"
OPERATOR_PREFIX = "operator:"

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
    callers: RateLimiter[tuple[str, ...]]
    refusals: RefusalAuditor

    def is_operator(self, principal: Principal) -> bool:
        return principal.role == self.api.roles.operator

    def actor_of(self, principal: Principal) -> str:
        """`user:<sub>`, or `operator:<sub>` for platform operators."""
        prefix = OPERATOR_PREFIX if self.is_operator(principal) else USER_PREFIX
        return prefix + principal.subject

    def caller_of(self, principal: Principal) -> Requester:
        home = principal.tenant_id
        if home is None or self.is_operator(principal):
            home = PLATFORM_LOG
        return Requester(
            key=(
                principal.issuer,
                principal.subject,
                str(principal.tenant_id),
                principal.role,
            ),
            actor=self.actor_of(principal),
            home=home,
            tenant_id=principal.tenant_id,
            role=principal.role,
            issuer=principal.issuer,
        )

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
        if action.mutates:
            # Before anything is audited: a caller's refused attempts are limited
            # like its changes, and past the limit land in its own log.
            attempt = self.callers.acquire(self.caller_of(principal).key)
            if not attempt.allowed:
                self.deny(
                    principal,
                    action,
                    None,
                    429,
                    "rate_limited",
                    f"at most {self.api.caller_rate_limit} change attempts per caller per minute; "
                    f"retry in {attempt.retry_after} s",
                    domain=domain,
                    headers={"Retry-After": str(attempt.retry_after)},
                )
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
        """Audit the refusal (in `target`'s log, else the caller's own) and answer it."""
        caller = self.caller_of(principal)
        self.refusals.record(
            Refusal(
                caller=caller,
                tenant_id=target if target is not None else caller.home,
                action=action.value,
                code=code,
                message=message,
                domain=domain,
            )
        )
        raise ApiError(status, code, message, headers=headers)

    def refused_request(
        self,
        principal: Principal,
        method: str,
        path: str,
        tenant_id: str | None,
        code: str,
        message: str,
    ) -> None:
        """Audit a request refused before its route ran (an invalid body or query).

        It is logged in the target tenant's log only if the caller may act there;
        otherwise in the caller's own: a bad request must not reach a log RBAC
        would keep the caller out of.
        """
        action = _action_of(method, path)
        if action is None:
            return
        caller = self.caller_of(principal)
        logged = caller.home
        try:
            target = self.target_of(principal, parse_tenant_id(tenant_id) if tenant_id else None)
        except (ApiError, TenantIdError, ValueError):
            target = None
        if (
            target is not None
            and decide(
                principal.role, action, principal.tenant_id, target, roles=self.api.roles
            ).allowed
        ):
            logged = target
        self.refusals.record(
            Refusal(
                caller=caller, tenant_id=logged, action=action.value, code=code, message=message
            )
        )


_ACTIONS: dict[tuple[str, str], ApiAction] = {
    ("GET", DOMAIN_PATH): ApiAction.READ,
    ("POST", DOMAIN_PATH): ApiAction.REQUEST,
    ("DELETE", DOMAIN_PATH): ApiAction.DISABLE,
    ("POST", DOMAIN_PATH + "/refresh"): ApiAction.REFRESH,
    ("GET", DOMAIN_PATH + "/audit"): ApiAction.AUDIT,
}


def _action_of(method: str, path: str) -> ApiAction | None:
    return _ACTIONS.get((method.upper(), path))


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
