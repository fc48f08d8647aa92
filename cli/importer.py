"""`portal-domains import SOURCE`: adopt the rows of the running TypeScript implementation.

SOURCE is the old database (`postgresql://...`, table `portal_domains`) or a CSV
or JSON dump of it. Each row keeps its hostname, status and certificate secret
name (so cert-manager finds the certificate it already issued; nothing is
re-ordered from Let's Encrypt). Rows are validated first (db.importer); a bad
row is reported and skipped, the others are imported. A tenant that already
has a row here is left alone (`unchanged` when it matches, `conflict` when it
does not). `--dry-run` shows exactly what would happen and writes nothing.

Exit codes: 0 every row imported or unchanged; 1 some rows were invalid or in
conflict (the rest were imported); 2 the source cannot be read.
"""

from __future__ import annotations

import argparse
from collections import Counter

from cli import output
from cli.common import actor_arg, actor_of, guarded, json_flag, operator_service
from cli.exit_codes import CliError, ExitCode
from core.settings import Settings
from db.importer import ImportSourceError, LegacyRow, RowProblem, parse_rows, read_source


def _cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    try:
        records = read_source(args.source)
    except ImportSourceError as err:
        raise CliError(str(err), ExitCode.INVALID_INPUT) from err
    parsed = parse_rows(records, base_domain=settings.base_domain)
    actor = actor_of(args)
    results: list[dict[str, object]] = []
    with operator_service(settings) as service:
        for item in parsed:
            if isinstance(item, RowProblem):
                results.append(
                    {
                        "row": item.row,
                        "tenant_id": item.tenant_id,
                        "domain": None,
                        "status": None,
                        "result": "invalid",
                        "reason": item.reason,
                    }
                )
                continue
            outcome = service.import_legacy(item, actor, dry_run=args.dry_run)
            results.append(_result(item, outcome.result, outcome.reason))
    counts = Counter(str(r["result"]) for r in results)
    if args.json:
        output.emit_json({"dry_run": args.dry_run, "counts": dict(counts), "rows": results})
    else:
        output.table(
            ["ROW", "TENANT", "DOMAIN", "STATUS", "RESULT", "REASON"],
            [
                [
                    r["row"],
                    r["tenant_id"],
                    r["domain"] or "",
                    r["status"] or "",
                    r["result"],
                    r["reason"] or "",
                ]
                for r in results
            ],
        )
        verb = "would be " if args.dry_run else ""
        output.line(
            f"{len(results)} row(s): "
            + ", ".join(f"{n} {verb}{result}" for result, n in sorted(counts.items()))
        )
    failed = counts.get("invalid", 0) + counts.get("conflict", 0)
    return int(ExitCode.FAILED) if failed else 0


def _result(row: LegacyRow, result: str, reason: str | None) -> dict[str, object]:
    return {
        "row": row.row,
        "tenant_id": str(row.tenant_id),
        "domain": row.domain,
        "status": row.status.value,
        "result": result,
        "reason": reason,
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "import",
        help="adopt the existing portal_domains rows (old database, CSV or JSON dump)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", help="postgresql://... (table portal_domains), or a .csv / .json dump"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would happen; write nothing"
    )
    actor_arg(parser)
    json_flag(parser)
    parser.set_defaults(handler=guarded(_cmd_import))
