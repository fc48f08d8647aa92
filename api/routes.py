"""The routes of /api/settings/client-portal/domain, on one APIRouter.

Authentication and authorisation come in as dependencies (api.deps); a route
only calls the domain service and shapes the answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response

from api.deps import (
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
)
from api.rbac import ApiAction
from core.canonical import canonical_host, prefix_candidates
from core.guidance import SAMPLE_HOSTNAME, guidance_for
from core.status import DomainStatus
from db.service import REMOVAL, REMOVAL_DONE, REMOVAL_PENDING, DomainNotFound, DomainView

DOMAIN_PATH = "/api/settings/client-portal/domain"

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
    view = gate.service.request(target, body.domain, caller.actor)
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
    return respond(gate, target, gate.service.refresh(target, caller.actor))


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
    return respond(gate, target, gate.service.disable(target, caller.actor))


# Operator actors as the CLI records them (`operator:<name>`): tenants see the role only.
_OPERATOR_PREFIX = "operator:"


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
    operator = caller.role == gate.api.roles.operator
    entries = gate.service.audit_log(target)[::-1][:limit]
    return AuditResponse(
        tenant_id=target,
        entries=[
            AuditEntryBody(
                occurred_at=e.occurred_at,
                actor=(
                    "platform operator"
                    if e.actor.startswith(_OPERATOR_PREFIX) and not operator
                    else e.actor
                ),
                action=e.action,
                domain=e.domain,
                status_before=e.status_before,
                status_after=e.status_after,
                outcome=e.outcome,
            )
            for e in entries
        ],
    )
