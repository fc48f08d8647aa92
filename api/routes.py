"""The routes of /api/settings/client-portal/domain, on one APIRouter.

Authentication and authorisation come in as dependencies (api.deps); a route
only calls the domain service and shapes the answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response

from api.deps import (
    DOMAIN_PATH,
    USER_PREFIX,
    AuditTarget,
    Caller,
    DisableTarget,
    Gate,
    ReadTarget,
    RefreshTarget,
    TenantQuery,
)
from api.errors import error_doc
from api.models import (
    AuditEntryBody,
    AuditResponse,
    DomainRequestBody,
    DomainStatusResponse,
    GuidanceBody,
    VerificationDetailsBody,
)
from api.rbac import ApiAction
from core.canonical import canonical_host, prefix_candidates
from core.guidance import SAMPLE_HOSTNAME, guidance_for
from core.records import cname_lost
from core.status import DomainStatus
from db.service import (
    REMOVAL,
    REMOVAL_DONE,
    REMOVAL_PENDING,
    AuditEntry,
    DomainNotFound,
    DomainView,
)

__all__ = ["DOMAIN_PATH", "router"]

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error_doc("Missing, malformed, expired or wrongly signed bearer token"),
    403: error_doc("RBAC refused the action (forbidden) or the edition lacks it"),
    413: error_doc("Request body larger than 16 KiB"),
    422: error_doc("Invalid tenant_id, request body or hostname (code = reason)"),
    500: error_doc("Unexpected error; the message carries a log reference only"),
}
_MUTATION_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH_ERRORS,
    429: error_doc("Too many mutations for this tenant; see the Retry-After header"),
    503: error_doc("Saved, but the reconciler could not be started: repeat the call"),
}


router = APIRouter()


def current(gate: Gate, tenant: UUID) -> DomainView | None:
    try:
        return gate.service.get(tenant)
    except DomainNotFound:
        return None


def respond(gate: Gate, tenant: UUID, view: DomainView | None) -> DomainStatusResponse:
    custom = gate.api.custom_domains
    if view is not None:
        canonical = view.canonical_host
    else:
        canonical = canonical_host(prefix_candidates(tenant)[0], gate.settings.base_domain)
    shown = view if custom else None
    prefix = view.canonical_prefix if view is not None else prefix_candidates(tenant)[0]
    delegation = gate.stack.challenge_delegation(
        domain=shown.domain if shown is not None else SAMPLE_HOSTNAME, prefix=prefix
    )
    guidance = guidance_for(
        shown.status if shown is not None else None,
        domain=shown.domain if shown is not None else None,
        canonical_host=canonical,
        custom_domains=custom,
        challenge_target=delegation.target if delegation is not None else None,
        cname_lost=shown is not None and cname_lost(shown.status, shown.verification_details),
    )
    return DomainStatusResponse(
        tenant_id=tenant,
        edition=gate.api.edition,
        custom_domains=custom,
        domain=shown.domain if shown is not None else None,
        canonical_host=canonical,
        canonical_host_assigned=view is not None,
        status=shown.status if shown is not None else None,
        status_message=shown.status_message if shown is not None else None,
        last_checked_at=shown.last_checked_at if shown is not None else None,
        updated_at=shown.updated_at if shown is not None else None,
        # Only what the checks found: operator detail (deploy errors) stays out.
        verification_details=(
            VerificationDetailsBody.of(shown.status, shown.verification_details, shown.requested_at)
            if shown is not None
            else None
        ),
        removal=_removal(shown),
        guidance=GuidanceBody.of(guidance),
    )


def _removal(view: DomainView | None) -> Literal["requested", "held", "removed"] | None:
    if view is None or view.status is not DomainStatus.DISABLED:
        return None
    state = view.verification_details.get(REMOVAL)
    if state in (*REMOVAL_PENDING, REMOVAL_DONE):
        return state  # type: ignore[no-any-return]
    return None


@router.get(
    DOMAIN_PATH,
    response_model=DomainStatusResponse,
    summary="The tenant's portal domain, its status and what to do next",
    responses=_AUTH_ERRORS,
)
def get_domain(gate: Gate, target: ReadTarget) -> DomainStatusResponse:
    return respond(gate, target, current(gate, target))


@router.post(
    DOMAIN_PATH,
    response_model=DomainStatusResponse,
    summary="Request a vanity hostname (replaces a different one; repeating is a no-op)",
    responses={
        200: {"description": "Already requested (no-op) or replaced the previous hostname"},
        201: {"model": DomainStatusResponse, "description": "First request of the tenant"},
        **_MUTATION_ERRORS,
        409: error_doc("Another tenant holds the hostname, or concurrent changes: retry"),
        415: error_doc("The body is not sent as application/json"),
    },
)
def request_domain(
    caller: Caller,
    body: DomainRequestBody,
    response: Response,
    tenant_id: TenantQuery,
    gate: Gate,
) -> DomainStatusResponse:
    # Authorised here rather than in a dependency: a refusal is audited with the
    # hostname asked for, which only the parsed body knows.
    target = gate.authorize(caller, ApiAction.REQUEST, tenant_id, domain=body.domain)
    before = current(gate, target)
    view = gate.service.request(target, body.domain, gate.actor_of(caller))
    if before is None:
        response.status_code = 201
        response.headers["Location"] = DOMAIN_PATH
    return respond(gate, target, view)


@router.post(
    f"{DOMAIN_PATH}/refresh",
    response_model=DomainStatusResponse,
    summary="Re-check now; a failed domain restarts its registration",
    responses={
        **_MUTATION_ERRORS,
        404: error_doc("The tenant has no domain (domain_not_found)"),
        409: error_doc("The domain is disabled: request it again instead (domain_disabled)"),
    },
)
def refresh_domain(caller: Caller, gate: Gate, target: RefreshTarget) -> DomainStatusResponse:
    return respond(gate, target, gate.service.refresh(target, gate.actor_of(caller)))


@router.delete(
    DOMAIN_PATH,
    response_model=DomainStatusResponse,
    summary="Disable the domain (its certificate and routing are removed); idempotent",
    responses={
        **_MUTATION_ERRORS,
        404: error_doc("The tenant has no domain (domain_not_found)"),
        409: error_doc("Concurrent changes: retry (concurrent_update)"),
    },
)
def disable_domain(caller: Caller, gate: Gate, target: DisableTarget) -> DomainStatusResponse:
    return respond(gate, target, gate.service.disable(target, gate.actor_of(caller)))


# What a tenant sees instead of an actor it must not: an operator's name, or a
# user of another tenant (a refused cross-tenant attempt).
SHOWN_OPERATOR = "platform operator"
SHOWN_OTHER_TENANT = "user of another tenant"
_SYSTEM_ACTORS = frozenset({"reconciler"})


def shown_actor(entry: AuditEntry, tenant: UUID) -> str:
    """The actor of `entry` as the tenant's own users may see it."""
    if entry.actor in _SYSTEM_ACTORS:
        return entry.actor
    detail = entry.detail or {}
    if entry.actor.startswith(USER_PREFIX):
        # Refusals record the caller's tenant; changes are always the tenant's own.
        if "caller_tenant_id" in detail and detail["caller_tenant_id"] != str(tenant):
            return SHOWN_OTHER_TENANT
        return entry.actor
    # `operator:<name>` from the API or the CLI, and any other CLI --actor.
    return SHOWN_OPERATOR


@router.get(
    DOMAIN_PATH + "/audit",
    response_model=AuditResponse,
    summary="The tenant's audit trail, newest first (tenant admins and platform operators)",
    responses=_AUTH_ERRORS,
)
def get_audit(
    caller: Caller,
    target: AuditTarget,
    gate: Gate,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many entries")] = 100,
) -> AuditResponse:
    operator = gate.is_operator(caller)
    entries = gate.service.audit_log(target)[::-1][:limit]
    return AuditResponse(
        tenant_id=target,
        entries=[
            AuditEntryBody(
                occurred_at=e.occurred_at,
                actor=e.actor if operator else shown_actor(e, target),
                action=e.action,
                domain=e.domain,
                status_before=e.status_before,
                status_after=e.status_after,
                outcome=e.outcome,
                count=_count(e),
            )
            for e in entries
        ],
    )


def _count(entry: AuditEntry) -> int:
    value = (entry.detail or {}).get("count", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1
