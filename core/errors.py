"""The one error taxonomy: every expected failure has a stable `code` and says if retrying helps.

Adapters map these in exactly one place each: the Temporal activities to an
`ApplicationError` (reconciler.errors), the REST API to an HTTP status
(api.errors), the CLI to an exit code (cli.exit_codes). Nothing matches on
class names as strings or parses a message back.

`kind` groups codes for those mappings, so a new error needs no new table
entry unless it wants a status of its own.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID_INPUT = "invalid_input"  # the caller sent something we cannot use
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the state moved on, or someone else holds the thing
    REFUSED = "refused"  # a guard said no (deletion budget, empty state, policy)
    UNAVAILABLE = "unavailable"  # a tool or service we need is missing or down
    FAILED = "failed"  # the operation ran and failed


class PortalDomainsError(Exception):
    """Base of every expected failure in the project."""

    # Class defaults; a subclass whose code depends on the case (hostname reasons)
    # sets it per instance.
    code: str = "error"
    kind: ErrorKind = ErrorKind.FAILED
    # Class default; an instance may override it (a Pulumi failure is retryable or not
    # depending on what the engine said).
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
