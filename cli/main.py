"""The `portal-domains` entry point: parse, dispatch to a command group, map failures.

Expected failures become one `error:` line and a named exit code
(cli.exit_codes), never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from cli import db as db_commands
from cli import (
    dev_cluster,
    doctor,
    domains,
    gitops,
    importer,
    output,
    policy,
    reshard,
    serve,
    stack,
    worker,
)
from cli.exit_codes import CliError, ExitCode, exit_code_for
from core.errors import PortalDomainsError
from core.settings import Settings
from reconciler.wiring import temporal_client_opened

Handler = Callable[[argparse.Namespace, Settings], int]

# One entry per command group, in the order `--help` lists them.
GROUPS = (
    domains,
    importer,
    db_commands,
    stack,
    reshard,
    gitops,
    worker,
    policy,
    serve,
    dev_cluster,
    doctor,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portal-domains",
        description="Vanity hostnames for client-portal tenants, reconciled with Pulumi.",
        epilog="exit codes: "
        + ", ".join(f"{int(c)} {c.name.lower().replace('_', ' ')}" for c in ExitCode),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env(os.environ)
        handler: Handler = args.handler
        return int(handler(args, settings))
    except CliError as exc:
        output.error(str(exc))
        return int(exc.exit_code)
    except PortalDomainsError as exc:
        output.error(str(exc))
        return int(exit_code_for(exc))
    except KeyboardInterrupt:
        output.error("interrupted")
        return int(ExitCode.INTERRUPTED)


def console(argv: Sequence[str] | None = None) -> NoReturn:
    """The installed `portal-domains` script: main(), then a safe process exit.

    Once a Temporal client was opened, the interpreter's teardown can abort the
    process (temporalio/sdk-python#300: the client's native threads touch Python
    while it finalizes), turning a finished command into exit code -6. So the exit
    handlers run (span and event flushes), the streams are flushed, and the process
    ends without that teardown.
    """
    code = main(argv)
    if not temporal_client_opened():
        sys.exit(code)
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe must not change the exit code
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
