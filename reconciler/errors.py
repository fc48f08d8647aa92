"""The one mapping from the project's error taxonomy to Temporal failures.

An activity raises `to_application_error(err)`: the failure's `type` is the
error's stable `code` and `non_retryable` follows `err.retryable`, so retry
policies need no lists of class names and workflows never parse messages.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from core.errors import PortalDomainsError


def to_application_error(err: PortalDomainsError, *, prefix: str = "") -> ApplicationError:
    # Data the workflow needs travels as details, never inside the message.
    details = getattr(err, "violations", ())
    return ApplicationError(
        f"{prefix}{err.message}", *details, type=err.code, non_retryable=not err.retryable
    )
