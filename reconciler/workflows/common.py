"""Retry policies and helpers shared by the workflows (deterministic code only)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from core.violations import PolicyViolation

QUICK = timedelta(seconds=30)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)
PROBE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
)
RECONCILE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=6,
)


def one_line(text: str, limit: int = 300) -> str:
    """One short line for a tenant-visible status message (no engine dumps)."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)


def violations_of(err: BaseException) -> tuple[PolicyViolation, ...]:
    """The policy violations an activity failure carries as details (if any)."""
    cause = err.__cause__
    if not isinstance(cause, ApplicationError) or cause.type != "policy_violation":
        return ()
    return tuple(PolicyViolation(**detail) for detail in cause.details if isinstance(detail, dict))
