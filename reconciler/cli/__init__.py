"""`portal-domains`: the operator command line.

Each sub-command validates its input, calls into the service layers and prints
through reconciler.cli.output. Expected failures become one `error:` line and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from reconciler.cli import output
from reconciler.settings import Settings, SettingsError


class CliError(Exception):
    """An expected failure: printed as one line, exit code attached."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


Handler = Callable[[argparse.Namespace, Settings], int]


def _cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from reconciler.doctor import run_checks

    checks = run_checks(settings)
    if args.json:
        output.emit_json([c.__dict__ for c in checks])
    else:
        for c in checks:
            mark = "OK     " if c.ok else "PROBLEM"
            hint = f"  -> {c.hint}" if c.hint and not c.ok else ""
            output.line(f"{mark} {c.component:<22} {c.detail}{hint}")
    return 0 if all(c.ok or not c.required for c in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portal-domains",
        description="Vanity hostnames for client-portal tenants, reconciled with Pulumi.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check the toolchain, Temporal CLI and database")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_cmd_doctor)

    from reconciler.cli import commands

    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        handler: Handler = args.handler
        return handler(args, settings)
    except SettingsError as exc:
        output.error(str(exc))
        return 2
    except CliError as exc:
        output.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
