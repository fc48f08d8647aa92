"""The operator console: all domains, charts from the audit trail, a tenant's history.

- GET /console                      every domain of this server's environment, filtered
                                    by ?status= (and ?environment=, which must be this
                                    server's own), with counts per status, time to active
                                    per domain and domains per status per day (inline SVG,
                                    from the audit trail: core.fleet, api.web.charts)
- GET /console/tenants/<tenant_id>  the tenant's domain, its status history and its
                                    audit entries, and its three objects as the stack
                                    state holds them with its nm-kube-config file
- /console/environment              stack health, recover, held deletions
                                    (api.web.environment)

Platform operators only (the operator role of the session); anyone else is
refused with 403 and the refusal audited in the caller's own log, like a
refused API read. These pages change nothing; the environment page's actions
are audited there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import Gatekeeper
from api.refusals import Refusal
from api.web.charts import BAR_X, COLUMN_BAR, days_chart, duration_chart
from api.web.pages import CONSOLE_PATH, gate_of, render, session_of, signed_out
from api.web.stacks import ConsoleStack, StackUnavailable, TenantDeployment
from api.web.view import BADGES
from core.canonical import TenantIdError, parse_tenant_id
from core.fleet import status_per_day, time_to_active
from core.status import DomainStatus
from db.service import AuditEntry, DomainNotFound

TENANT_PATH = "/console/tenants/{tenant_id}"
ENVIRONMENT_PATH = "/console/environment"
_BAR_WIDTH = 300
CHART_DAYS = 14

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, kw_only=True)
class Bar:
    status: str
    label: str
    count: int
    width: int
    y: int


def console_stack(request: Request) -> ConsoleStack:
    stack: ConsoleStack = request.app.state.console_stack
    return stack


def operator_or_refusal(request: Request, action: str) -> Response | None:
    """None for a platform operator; otherwise the answer (sign-in page or 403, audited)."""
    session = session_of(request)
    if session is None:
        return signed_out(request)
    gate: Gatekeeper = gate_of(request)
    if gate.is_operator(session.principal):
        return None
    caller = gate.caller_of(session.principal)
    gate.refusals.record(
        Refusal(
            caller=caller,
            tenant_id=caller.home,
            action=action,
            code="forbidden",
            message=f"the operator console needs the {gate.api.roles.operator} role",
        )
    )
    return render(
        request,
        "signed_out.html",
        403,
        title="Not available",
        message="The operator console is for platform operators only.",
    )


def _bars(counts: dict[DomainStatus, int]) -> list[Bar]:
    most = max(counts.values(), default=0) or 1
    return [
        Bar(
            status=status.value,
            label=BADGES[status],
            count=counts.get(status, 0),
            width=round(_BAR_WIDTH * counts.get(status, 0) / most),
            y=index * 24,
        )
        for index, status in enumerate(DomainStatus)
    ]


@router.get(CONSOLE_PATH)
def console(
    request: Request, status: str | None = None, environment: str | None = None
) -> Response:
    refused = operator_or_refusal(request, "console")
    if refused is not None:
        return refused
    gate = gate_of(request)
    own = gate.settings.environment
    everything = gate.service.list()
    counts = dict.fromkeys(DomainStatus, 0)
    for view in everything:
        counts[view.status] += 1
    wanted: DomainStatus | None = None
    if status:
        try:
            wanted = DomainStatus(status)
        except ValueError:
            wanted = None
    # Every tenant's trail: one query per tenant, fine at a console's scale.
    entries: list[AuditEntry] = []
    for view in everything:
        entries.extend(gate.service.audit_log(view.tenant_id))
    today = datetime.now(UTC).date()
    shown = [] if environment not in (None, "", own) else everything
    if wanted is not None:
        shown = [view for view in shown if view.status is wanted]
    return render(
        request,
        "console.html",
        title="Portal domains: operator console",
        environment=own,
        chosen_environment=environment or own,
        chosen_status=wanted.value if wanted is not None else "",
        statuses=[(s.value, BADGES[s]) for s in DomainStatus],
        bars=_bars(counts),
        total=len(everything),
        chart_height=len(DomainStatus) * 24,
        durations=duration_chart(time_to_active(entries)),
        days=days_chart(
            status_per_day(entries, first=today - timedelta(days=CHART_DAYS - 1), last=today)
        ),
        chart_days=CHART_DAYS,
        bar_x=BAR_X,
        column_bar=COLUMN_BAR,
        environment_path=ENVIRONMENT_PATH,
        domains=shown,
        badges=BADGES,
        tenant_path=CONSOLE_PATH + "/tenants/",
        query=urlencode,
    )


@router.get(TENANT_PATH)
def console_tenant(request: Request, tenant_id: str) -> Response:
    refused = operator_or_refusal(request, "console")
    if refused is not None:
        return refused
    gate = gate_of(request)
    try:
        tenant: UUID = parse_tenant_id(tenant_id)
    except TenantIdError:
        return render(
            request,
            "signed_out.html",
            422,
            title="Not a tenant id",
            message="The tenant id must be a UUID.",
        )
    try:
        view = gate.service.get(tenant)
    except DomainNotFound:
        view = None
    entries = gate.service.audit_log(tenant)
    deployment: TenantDeployment | None = None
    stack_note: str | None = None
    if view is not None:
        try:
            deployment = console_stack(request).tenant(view.canonical_prefix)
        except StackUnavailable as exc:
            stack_note = str(exc)
        if deployment is None and stack_note is None:
            stack_note = (
                f"The {gate.settings.environment} stack does not exist yet: no reconcile has "
                "run in this environment."
            )
    history = [
        e
        for e in entries
        if e.outcome == "ok" and e.status_after is not None and e.status_after != e.status_before
    ]
    return render(
        request,
        "console_tenant.html",
        title=f"Tenant {tenant}",
        tenant=str(tenant),
        view=view,
        history=history,
        entries=entries[::-1],
        badges=BADGES,
        deployment=deployment,
        stack_note=stack_note,
        environment=gate.settings.environment,
        console_path=CONSOLE_PATH,
        page_path="/portal/settings/domain?" + urlencode({"tenant_id": str(tenant)}),
    )
