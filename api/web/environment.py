"""The console's environment page: stack health and recover, held deletions and their confirmation.

- GET  /console/environment                    the stack's health (exists, lock files,
                                               pending operations, last successful run)
                                               and the held deletions (disabled rows whose
                                               removal a guard held: `removal: held`)
- POST /console/environment/recover            EnvironmentStack.recover (the CLI's
                                               `recover`), refused while the environment
                                               workflow reconciles or when Temporal cannot
                                               say whether it does
- POST /console/environment/confirm-deletions  one reconcile through the environment
                                               workflow with confirm_deletions (the CLI's
                                               `reconcile --yes`): it joins the worker's queue
- POST /console/environment/preview            EnvironmentStack.plan of every row: the
                                               per-tenant changes the worker's next run
                                               would make, the deletions it would hold and
                                               why; refused like recover while the workflow
                                               reconciles; changes nothing

The page also lists the recent reconcile runs from nm-kube-config's Git log
(api.web.runs: the publisher's commits touching the environment's folder).

Platform operators only (refusals audited as on the other console pages); the
POSTs need the session's CSRF token (a refusal is audited as `csrf_failed`).
Each action is audited in the platform log, outcome `ok` or `rejected`, with
what it did in its detail; a confirmation also in each held tenant's log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import Gatekeeper
from api.refusals import Refusal
from api.web.console import ENVIRONMENT_PATH, console_stack, operator_or_refusal
from api.web.pages import CONSOLE_PATH, gate_of, render, session_of, signed_out
from api.web.runs import audited_runs, recent_runs
from api.web.session import CSRF_FIELD, CSRF_HEADER, Session
from api.web.stacks import ConsoleStack, PlanFailed, StackHealth, StackUnavailable
from api.web.view import BADGES
from core.settings import Settings
from db.service import PLATFORM_LOG, REMOVAL, REMOVAL_HELD, DomainService, DomainView
from reconciler.environment_reconcile import all_records
from reconciler.payloads import ReconcileOutcome, ReconcileRequest
from reconciler.starter import reconcile_busy, reconcile_now
from reconciler.wiring import connect
from stack.automation import RunSummary

logger = logging.getLogger(__name__)

RECOVER_PATH = ENVIRONMENT_PATH + "/recover"
CONFIRM_PATH = ENVIRONMENT_PATH + "/confirm-deletions"
PREVIEW_PATH = ENVIRONMENT_PATH + "/preview"
CONNECT_SECONDS = 3.0
QUERY_SECONDS = 5.0
# How long the page waits for the confirming run; it stays queued after that.
RUN_SECONDS = 120.0

router = APIRouter(include_in_schema=False)


class ConsoleAction(StrEnum):
    """Audit actions of the environment page (no DomainAction fits a stack-wide action)."""

    RECOVER = "recover_stack"
    CONFIRM_DELETIONS = "confirm_deletions"
    PREVIEW = "preview_changes"


NOTICES = {
    "recovered": "The stack was recovered.",
    "confirmed": "The held deletions were confirmed: the reconcile ran.",
}


class TemporalUnreachable(RuntimeError):
    pass


@dataclass(frozen=True, kw_only=True)
class Answer:
    status: int
    message: str


@dataclass(frozen=True, kw_only=True)
class PreviewRow:
    slug: str
    tenant_id: UUID | None  # None: no row has this slug (a tenant that vanished)
    change: str  # create / update / replace / delete / held
    operations: str  # "create 3", "update 1, delete 1", ...


@dataclass(frozen=True, kw_only=True)
class Preview:
    summary: RunSummary
    rows: list[PreviewRow]

    @property
    def held_reason(self) -> str | None:
        return self.summary.held_reason

    @property
    def violations(self) -> list[str]:
        return [v.line() for v in self.summary.policy_violations]


def preview_of(summary: RunSummary, service: DomainService) -> Preview:
    """The plan's changes per tenant, held deletions last, each with its tenant if known."""
    tenants = {view.canonical_prefix: view.tenant_id for view in service.list()}
    rows = [
        PreviewRow(
            slug=change.slug,
            tenant_id=tenants.get(change.slug),
            change=change.kind,
            operations=", ".join(f"{op} {n}" for op, n in sorted(change.operations.items()) if n),
        )
        for change in summary.tenants
    ]
    rows += [
        PreviewRow(
            slug=slug,
            tenant_id=tenants.get(slug),
            change="held",
            operations="delete held until confirmed",
        )
        for slug in summary.held_tenants
    ]
    return Preview(summary=summary, rows=rows)


def held_deletions(service: DomainService) -> list[DomainView]:
    """Disabled rows whose objects a guard kept in the stack until an operator confirms."""
    return [
        view
        for view in service.list()
        if (view.verification_details or {}).get(REMOVAL) == REMOVAL_HELD
    ]


def _audit(
    service: DomainService,
    tenant_id: UUID,
    action: ConsoleAction,
    actor: str,
    *,
    outcome: str,
    detail: Mapping[str, Any],
) -> None:
    service.audit_operator_action(tenant_id, action, actor, outcome=outcome, detail=detail)


def _page(
    request: Request,
    session: Session,
    *,
    notice: str | None = None,
    error: str | None = None,
    outcome: ReconcileOutcome | None = None,
    preview: Preview | None = None,
    status: int = 200,
) -> Response:
    gate = gate_of(request)
    stack = console_stack(request)
    health: StackHealth | None = None
    health_note: str | None = None
    try:
        health = stack.health()
    except StackUnavailable as exc:
        health_note = str(exc)
    return render(
        request,
        "console_environment.html",
        status,
        title=f"Environment {stack.environment}",
        environment=stack.environment,
        health=health,
        health_note=health_note,
        held=held_deletions(gate.service),
        badges=BADGES,
        notice=NOTICES.get(notice or ""),
        error=error,
        outcome=outcome,
        preview=preview,
        runs=recent_runs(gate.settings, stack.environment),
        attempts=audited_runs(gate.service, stack.environment),
        csrf=request.app.state.web.sessions.csrf_token(session),
        csrf_field=CSRF_FIELD,
        console_path=CONSOLE_PATH,
        tenant_path=CONSOLE_PATH + "/tenants/",
        recover_path=RECOVER_PATH,
        confirm_path=CONFIRM_PATH,
        preview_path=PREVIEW_PATH,
    )


@router.get(ENVIRONMENT_PATH)
def environment_page(request: Request, notice: str | None = None) -> Response:
    refused = operator_or_refusal(request, "console")
    if refused is not None:
        return refused
    session = session_of(request)
    assert session is not None  # operator_or_refusal answered otherwise
    return _page(request, session, notice=notice)


@dataclass(frozen=True)
class _Operator:
    """Who acts on which environment's stack, once RBAC and CSRF let them."""

    session: Session
    gate: Gatekeeper
    stack: ConsoleStack
    actor: str

    @property
    def environment(self) -> str:
        return self.stack.environment


def _operator(request: Request, action: ConsoleAction, csrf_token: str) -> Response | _Operator:
    checked = _checked(request, action, csrf_token)
    if not isinstance(checked, Session):
        return checked
    gate = gate_of(request)
    return _Operator(
        session=checked,
        gate=gate,
        stack=console_stack(request),
        actor=gate.actor_of(checked.principal),
    )


def _checked(request: Request, action: ConsoleAction, csrf_token: str) -> Response | Session:
    """The operator's session, or the refusal to answer (RBAC and CSRF, each audited)."""
    session = session_of(request)
    if session is None:
        return signed_out(request)
    refused = operator_or_refusal(request, action.value)
    if refused is not None:
        return refused
    supplied = csrf_token or request.headers.get(CSRF_HEADER)
    if not request.app.state.web.sessions.csrf_ok(session, supplied):
        gate = gate_of(request)
        caller = gate.caller_of(session.principal)
        gate.refusals.record(
            Refusal(
                caller=caller,
                tenant_id=caller.home,
                action=action.value,
                code="csrf_failed",
                message="the form's CSRF token is missing or wrong (a cross-site request?)",
            )
        )
        return _page(
            request,
            session,
            error="The form was refused: reload the page and try again.",
            status=403,
        )
    return session


async def _busy(settings: Settings, environment: str) -> bool:
    try:
        client = await asyncio.wait_for(connect(settings), CONNECT_SECONDS)
    except (RuntimeError, OSError, TimeoutError) as exc:
        raise TemporalUnreachable(str(exc) or "timed out") from exc
    try:
        return await asyncio.wait_for(reconcile_busy(client, environment), QUERY_SECONDS)
    except TimeoutError as exc:
        raise TemporalUnreachable(
            "the environment workflow did not answer its status query"
        ) from exc


def _refused_while_reconciling(
    settings: Settings, env: str, *, busy: str, unreachable: str
) -> Answer | None:
    """409 while the environment workflow reconciles, 503 when nobody can say; else None."""
    try:
        if asyncio.run(_busy(settings, env)):
            return Answer(
                status=409,
                message=f"The {env} environment workflow is reconciling right now: {busy}. "
                "Wait for it to finish.",
            )
    except TemporalUnreachable as exc:
        return Answer(
            status=503,
            message=f"Temporal at {settings.temporal_address} is unreachable ({exc}), so "
            f"nothing says whether a reconcile of {env} runs: {unreachable}",
        )
    return None


@router.post(RECOVER_PATH)
def recover(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    op = _operator(request, ConsoleAction.RECOVER, csrf_token)
    if not isinstance(op, _Operator):
        return op
    session, gate, stack, actor, env = op.session, op.gate, op.stack, op.actor, op.environment
    steps: list[str] = []
    answer = _refused_while_reconciling(
        gate.settings,
        env,
        busy="recovering would break its run",
        unreachable=f"not recovered. When you are sure no worker runs, use "
        f"`portal-domains recover --env {env}`.",
    )
    if answer is None:
        try:
            steps = stack.recover()
        except StackUnavailable as exc:
            answer = Answer(status=409, message=f"Not recovered: {exc}")
    _audit(
        gate.service,
        PLATFORM_LOG,
        ConsoleAction.RECOVER,
        actor,
        outcome="rejected" if answer else "ok",
        detail={
            "environment": env,
            "steps": steps,
            **({"reason": answer.message} if answer else {}),
        },
    )
    if answer is not None:
        return _page(request, session, error=answer.message, status=answer.status)
    logger.info("%s recovered stack %s: %s", actor, env, "; ".join(steps) or "nothing to do")
    return RedirectResponse(
        f"{ENVIRONMENT_PATH}?{urlencode({'notice': 'recovered'})}", status_code=303
    )


async def _confirm(settings: Settings, environment: str, actor: str) -> ReconcileOutcome:
    try:
        client = await asyncio.wait_for(connect(settings), CONNECT_SECONDS)
    except (RuntimeError, OSError, TimeoutError) as exc:
        raise TemporalUnreachable(str(exc) or "timed out") from exc
    request = ReconcileRequest(
        request_id=f"console-{uuid.uuid4()}",
        reason=f"operator confirmed held deletions in the console ({actor})",
        confirm_deletions=True,
    )
    return await asyncio.wait_for(
        reconcile_now(
            client,
            environment=environment,
            task_queue=settings.task_queue,
            request=request,
            debounce_seconds=settings.debounce_seconds,
        ),
        RUN_SECONDS,
    )


@router.post(CONFIRM_PATH)
def confirm_deletions(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    op = _operator(request, ConsoleAction.CONFIRM_DELETIONS, csrf_token)
    if not isinstance(op, _Operator):
        return op
    session, gate, actor, env = op.session, op.gate, op.actor, op.environment
    held = held_deletions(gate.service)
    outcome: ReconcileOutcome | None = None
    answer: Answer | None = None
    try:
        outcome = asyncio.run(_confirm(gate.settings, env, actor))
    except TemporalUnreachable as exc:
        answer = Answer(
            status=503,
            message=f"Temporal at {gate.settings.temporal_address} is unreachable ({exc}): "
            "nothing was confirmed. Try again when it is back, or run "
            f"`portal-domains reconcile --env {env} --local --yes` on a worker host.",
        )
    except TimeoutError:
        answer = Answer(
            status=202,
            message=f"The confirming reconcile of {env} did not finish within {RUN_SECONDS:g} s: "
            f"is a worker polling task queue {gate.settings.task_queue}? It stays queued and "
            "runs when one does.",
        )
    if outcome is not None and not outcome.ok:
        answer = Answer(status=502, message=f"The reconcile failed: {outcome.message}")
    detail: dict[str, Any] = {
        "environment": env,
        "held_tenants": sorted(v.canonical_prefix for v in held),
    }
    if outcome is not None:
        detail |= {"message": outcome.message, "commit": outcome.commit, "deleted": outcome.deleted}
    if answer is not None:
        detail["reason"] = answer.message
    result = "ok" if answer is None or answer.status == 202 else "rejected"
    for tenant in [PLATFORM_LOG, *(v.tenant_id for v in held)]:
        _audit(
            gate.service,
            tenant,
            ConsoleAction.CONFIRM_DELETIONS,
            actor,
            outcome=result,
            detail=detail,
        )
    if answer is not None:
        return _page(request, session, error=answer.message, outcome=outcome, status=answer.status)
    return _page(request, session, notice="confirmed", outcome=outcome)


@router.post(PREVIEW_PATH)
def preview_changes(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    op = _operator(request, ConsoleAction.PREVIEW, csrf_token)
    if not isinstance(op, _Operator):
        return op
    session, gate, stack, actor, env = op.session, op.gate, op.stack, op.actor, op.environment
    preview: Preview | None = None
    answer = _refused_while_reconciling(
        gate.settings,
        env,
        busy="a preview would race its run for the stack",
        unreachable=f"nothing previewed. `portal-domains preview --env {env}` shows the same "
        "on a worker host.",
    )
    if answer is None:
        try:
            preview = preview_of(stack.plan(all_records(gate.service)), gate.service)
        except PlanFailed as exc:
            answer = Answer(status=422, message=f"Nothing to show: {exc}")
        except StackUnavailable as exc:
            answer = Answer(status=409, message=f"Nothing previewed: {exc}")
    detail: dict[str, Any] = {"environment": env}
    if preview is not None:
        summary = preview.summary
        detail |= {
            "counts": summary.counts,
            "tenants": {t.slug: t.kind for t in summary.tenants},
            "held_tenants": summary.held_tenants,
            "held_reason": summary.held_reason,
        }
    if answer is not None:
        detail["reason"] = answer.message
    _audit(
        gate.service,
        PLATFORM_LOG,
        ConsoleAction.PREVIEW,
        actor,
        outcome="rejected" if answer else "ok",
        detail=detail,
    )
    if answer is not None:
        return _page(request, session, error=answer.message, status=answer.status)
    return _page(request, session, preview=preview)
