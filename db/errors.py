"""Expected failures of the domain service, each with a stable `code`.

The REST layer maps codes to HTTP statuses and the CLI prints the message;
neither needs to know the exception classes beyond DomainError. Hostname
validation errors (core.hostnames.HostnameError) and illegal transitions
(core.status.IllegalTransition) pass through unchanged from the core.
"""

from __future__ import annotations

from uuid import UUID

from core.errors import ErrorKind, PortalDomainsError
from core.status import DomainStatus


class DomainError(PortalDomainsError):
    code = "domain_error"


class DomainAlreadyClaimed(DomainError):
    """Another tenant holds the hostname (which tenant is not revealed).

    Holding means its DNS is verified and it is not disabled: raised by a request
    for such a hostname, and by a status write that would make a second tenant
    hold it (db.models.HOLDING_STATUSES). Retrying does not help.
    """

    code = "domain_already_claimed"
    kind = ErrorKind.CONFLICT

    def __init__(self, domain: str) -> None:
        super().__init__(f"{domain} is already registered by another tenant")
        self.domain = domain


class DomainNotFound(DomainError):
    code = "domain_not_found"
    kind = ErrorKind.NOT_FOUND

    def __init__(self, tenant_id: UUID) -> None:
        super().__init__(f"tenant {tenant_id} has no portal domain")
        self.tenant_id = tenant_id


class DomainDisabled(DomainError):
    """The operation needs an enabled domain; a new request re-enables it."""

    code = "domain_disabled"
    kind = ErrorKind.CONFLICT

    def __init__(self, tenant_id: UUID, domain: str) -> None:
        super().__init__(
            f"the portal domain {domain} of tenant {tenant_id} is disabled; "
            "request it again to re-enable it"
        )
        self.tenant_id = tenant_id
        self.domain = domain


class DomainNotDisabled(DomainError):
    """Purging (deleting the row for good) needs a disabled domain; disable it first."""

    code = "domain_not_disabled"
    kind = ErrorKind.REFUSED

    def __init__(self, tenant_id: UUID, domain: str, status: DomainStatus) -> None:
        super().__init__(
            f"the portal domain {domain} of tenant {tenant_id} is {status}, not disabled; "
            "only a disabled domain can be purged: disable it first"
        )
        self.tenant_id = tenant_id
        self.domain = domain
        self.status = status


class StaleStatus(DomainError):
    """A conditional status write found the row in another status or version."""

    code = "stale_status"
    kind = ErrorKind.CONFLICT

    def __init__(
        self,
        *,
        tenant_id: UUID,
        expected_status: DomainStatus,
        actual_status: DomainStatus,
        expected_version: int | None,
        actual_version: int,
    ) -> None:
        expected = f"{expected_status}" + (
            f" at version {expected_version}" if expected_version is not None else ""
        )
        super().__init__(
            f"tenant {tenant_id}: expected status {expected} but the domain is "
            f"{actual_status} at version {actual_version}; it moved on, re-read it and decide "
            "again"
        )
        self.tenant_id = tenant_id
        self.expected_status = expected_status
        self.actual_status = actual_status
        self.expected_version = expected_version
        self.actual_version = actual_version


class ConcurrentUpdate(DomainError):
    """Concurrent writers kept invalidating each other; the caller may retry."""

    code = "concurrent_update"
    kind = ErrorKind.CONFLICT
    retryable = True


class HookFailed(DomainError):
    """The change is committed, but the after-commit hook (workflow start) failed.

    Retrying the same call is safe: it is idempotent and runs the hook again.
    """

    code = "hook_failed"
    kind = ErrorKind.UNAVAILABLE
    retryable = True


class RemovalInProgress(DomainError):
    """The domain is disabled but its objects are not removed yet: too early to purge."""

    code = "removal_in_progress"
    kind = ErrorKind.REFUSED

    def __init__(self, tenant_id: UUID, domain: str) -> None:
        super().__init__(
            f"the removal of {domain} (tenant {tenant_id}) is not finished; purge it once "
            "`domains status` says it was removed (a reconcile removes it)"
        )
        self.tenant_id = tenant_id
        self.domain = domain
