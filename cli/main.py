"""The `portal-domains` entry point: parse, dispatch to a command group, map failures.

Expected failures become one `error:` line and a named exit code
(cli.exit_codes), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from cli import db as db_commands
from cli import dev_cluster, doctor, domains, importer, output, policy, serve, stack, worker
from cli.exit_codes import CliError, ExitCode, exit_code_for
from core.errors import PortalDomainsError
from core.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]

# One entry per command group, in the order `--help` lists them.
GROUPS = (domains, importer, db_commands, stack, worker, policy, serve, dev_cluster, doctor)


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


if __name__ == "__main__":
    sys.exit(main())
