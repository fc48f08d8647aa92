"""Every exit code of `portal-domains`, named once, and the one map from errors to them."""

from __future__ import annotations

import enum

from core.errors import ErrorKind, PortalDomainsError


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # the operation ran and failed; the message says why
    INVALID_INPUT = 2  # a bad argument, hostname, tenant id or setting (argparse uses 2 too)
    UNAVAILABLE = 3  # a tool or service it needs is missing or down (Pulumi CLI, Temporal, ...)
    REFUSED = 4  # a safety guard refused, or the operator declined a confirmation
    PERMANENT = 5  # failed in a way retrying the same input cannot fix
    POLICY_VIOLATION = 6  # the policy pack reported a mandatory violation
    INTERRUPTED = 130  # Ctrl-C


_BY_KIND: dict[ErrorKind, ExitCode] = {
    ErrorKind.INVALID_INPUT: ExitCode.INVALID_INPUT,
    ErrorKind.NOT_FOUND: ExitCode.FAILED,
    ErrorKind.CONFLICT: ExitCode.FAILED,
    ErrorKind.REFUSED: ExitCode.REFUSED,
    ErrorKind.UNAVAILABLE: ExitCode.UNAVAILABLE,
    ErrorKind.FAILED: ExitCode.FAILED,
}


def exit_code_for(err: PortalDomainsError) -> ExitCode:
    code = _BY_KIND[err.kind]
    if code is ExitCode.FAILED and not err.retryable and err.kind is ErrorKind.FAILED:
        return ExitCode.PERMANENT
    return code


class CliError(Exception):
    """An expected failure: printed as one `error:` line with its exit code."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @classmethod
    def from_error(cls, err: PortalDomainsError, *, prefix: str = "") -> CliError:
        return cls(f"{prefix}{err.code}: {err.message}", exit_code_for(err))
