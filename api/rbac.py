"""Who may do what to whose portal domain: a pure decision, no I/O.

- The tenant admin role may read and change its own tenant's domain.
- Tenant reader roles (e.g. tenant_member) may only read their own tenant's status.
- The platform operator role may read and change any tenant's domain.
- Anything else (another tenant, an unknown role, a tenant role without a
  tenant) is denied, with a reason the caller can act on.

Edition gating and rate limiting are separate checks made after this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from api.settings import RoleNames


class ApiAction(StrEnum):
    READ = "read"
    REQUEST = "request"
    REFRESH = "refresh"
    DISABLE = "disable"
    AUDIT = "audit"  # read the tenant's audit trail

    @property
    def mutates(self) -> bool:
        return self in (ApiAction.REQUEST, ApiAction.REFRESH, ApiAction.DISABLE)


@dataclass(frozen=True, kw_only=True)
class Decision:
    allowed: bool
    reason: str


def decide(
    role: str,
    action: ApiAction,
    caller_tenant: UUID | None,
    target_tenant: UUID | None,
    *,
    roles: RoleNames | None = None,
) -> Decision:
    """May a caller with `role` of `caller_tenant` do `action` to `target_tenant`?

    `target_tenant` None means the request names no tenant (only possible for a
    tenant role whose token lacks tenant_id): denied.
    """
    names = roles or RoleNames()
    verb = {
        ApiAction.READ: "read the portal domain of",
        ApiAction.AUDIT: "read the audit trail of",
    }.get(action, f"{action} the domain of")
    if role == names.operator:
        if target_tenant is None:
            return Decision(allowed=False, reason="platform operators must name a tenant")
        return Decision(allowed=True, reason=f"platform operators may {verb} any tenant")
    if role != names.admin and role not in names.readers:
        return Decision(
            allowed=False,
            reason=(
                f"role {role!r} has no access to portal domains (allowed roles: {names.admin}, "
                f"{', '.join(sorted(names.readers))}, {names.operator})"
            ),
        )
    if caller_tenant is None or target_tenant is None:
        return Decision(allowed=False, reason=f"role {role!r} needs a tenant_id in the token")
    if caller_tenant != target_tenant:
        return Decision(
            allowed=False,
            reason=f"role {role!r} may only act on its own tenant, not on tenant {target_tenant}",
        )
    if role == names.admin:
        return Decision(allowed=True, reason=f"tenant admins may {verb} their own tenant")
    if action is ApiAction.READ:
        return Decision(allowed=True, reason=f"role {role!r} may read its own tenant's domain")
    if action is ApiAction.AUDIT:
        return Decision(
            allowed=False,
            reason=f"role {role!r} may not read the audit trail; it needs the {names.admin} role",
        )
    return Decision(
        allowed=False,
        reason=(
            f"role {role!r} may only read the portal domain; to {action} it you need the "
            f"{names.admin} role"
        ),
    )
