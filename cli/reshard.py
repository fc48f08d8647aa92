"""`stack reshard`: move an environment's tenants to another number of shard stacks.

The tenants' resources change stack with `pulumi state move` (stack.reshard), so
nothing is deleted or re-created. Run it with the environment's reconciles
stopped; a run that fails or is interrupted is finished by running it again.
"""

from __future__ import annotations

import argparse

from cli import output
from cli.exit_codes import CliError, ExitCode
from core.config import ConfigError
from core.settings import Settings
from core.shards import MAX_SHARDS
from reconciler.wiring import environment_stack
from stack.config import ENVIRONMENTS
from stack.reshard import ReshardReport, reshard


def _shard_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= count <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_SHARDS}, got {count}")
    return count


def _print_report(report: ReshardReport) -> None:
    plan = report.plan
    moves = plan.moves if report.dry_run else report.moved
    verb = "would move" if report.dry_run else "moved"
    output.line(
        f"{plan.environment}: {', '.join(plan.existing) or 'no stack'} -> "
        f"{', '.join(plan.stacks)} ({plan.count} shard(s)); {verb} "
        f"{sum(len(m.slugs) for m in moves)} tenant(s)"
    )
    if moves:
        output.table(
            ["FROM", "TO", "TENANTS", "ISSUER"],
            [
                [m.source, m.dest, ", ".join(m.slugs) or "-", "yes" if m.issuer else ""]
                for m in moves
            ],
        )
    drops = plan.drops if report.dry_run else report.dropped
    for drop in drops:
        what = [*drop.slugs, *(["the ClusterIssuer"] if drop.issuer else [])]
        output.line(
            f"{'would drop' if report.dry_run else 'dropped'} stale copies from "
            f"{drop.stack} (kept where they belong): {', '.join(what)}"
        )
    removed = plan.remove if report.dry_run else report.removed
    if removed:
        output.line(
            f"{'would remove' if report.dry_run else 'removed'} stack(s): {', '.join(removed)}"
        )
    for unplaced in plan.unplaced:
        output.line(f"left in {unplaced.stack}: {unplaced.slug} ({unplaced.reason})")
    if plan.kept:
        output.line(f"kept (still holding unplaced tenants): {', '.join(plan.kept)}")
    if report.dry_run:
        output.line("dry run: nothing changed")
    elif not report.changed:
        output.line("every tenant is already in its shard: nothing to do")
    elif report.sizes:
        output.line("tenants per stack: " + ", ".join(f"{s} {n}" for s, n in report.sizes.items()))


def cmd_reshard(args: argparse.Namespace, settings: Settings) -> int:
    try:
        # What the worker uses: the stack config, the Pulumi environment and the run
        # record store (shared in the database when the Pulumi backend is shared).
        stacks = environment_stack(settings, args.env)
    except ConfigError as err:
        raise CliError(str(err), exit_code=ExitCode.INVALID_INPUT) from err
    if stacks.penv.toolchain.executable("pulumi") is None:
        raise CliError("no Pulumi CLI found: run scripts/setup.sh", exit_code=ExitCode.UNAVAILABLE)
    config = stacks.config
    report = reshard(
        stacks.penv,
        config,
        args.shards if args.shards is not None else config.shards,
        work_dir=settings.work_dir,
        dry_run=args.dry_run,
        progress=None if args.quiet else output.progress,
        run_records=stacks.shards[0].run_records,
    )
    if args.json:
        output.emit_json(report.as_dict())
    else:
        _print_report(report)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("stack", help="the environment's Pulumi stacks (sharding)")
    commands = group.add_subparsers(dest="stack_command", required=True, metavar="COMMAND")
    text = (
        "move the environment's tenants to N shard stacks with `pulumi state move` "
        "(nothing is re-created); stop the environment's reconciles first"
    )
    parser = commands.add_parser("reshard", help=text, description=text)
    parser.add_argument("--env", required=True, choices=ENVIRONMENTS, help="environment")
    parser.add_argument(
        "--shards",
        type=_shard_count,
        default=None,
        metavar="N",
        help="the new shard count (default: the environment's `shards` setting)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show the moves and removals, change nothing"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(handler=cmd_reshard)
