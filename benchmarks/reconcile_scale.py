"""The worker's reconcile next to the bare Pulumi engine, on the same resources (issue 16).

For each size N, in one run:

- **bare engine** (the floor): one stack, the same program (`stack.program.build`)
  on the same N tenants, `up` only, no policy pack, no guards, no export, no Git;
- **reconcile**: what the worker runs (`reconciler.environment_reconcile.reconcile_once`
  with `skip_unchanged`, as the activity calls it): preview with guards and the
  policy pack, up, export from the state, commit and push to a bare nm-kube-config.

Each is timed for the first build (N tenants from nothing), a run with nothing
changed, and a run where one tenant's domain changed. File backend, gitops mode,
checkpoints on.

Usage: python -m benchmarks.reconcile_scale [N ...]   (default: 10 100)
Prints one Markdown table; `--json` prints the raw rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry import trace

from adapters.gitops import GitOpsRepo, GitSettings, ensure_bare_remote
from benchmarks.stack_scale import records
from core.config import StackConfig, parse_stack_config
from core.records import DomainRecord
from reconciler.environment_reconcile import reconcile_once
from stack import program
from stack.automation import PROJECT, EnvironmentStack
from stack.toolchain import pulumi_environment
from stack.workspace import open_stack

PASS = {"PULUMI_CONFIG_PASSPHRASE": "bench"}


def _changed(rows: list[DomainRecord]) -> list[DomainRecord]:
    """One tenant moves to another hostname (its three objects are updated)."""
    first = rows[0]
    return [dataclasses.replace(first, domain="clients." + first.domain), *rows[1:]]


def _timed(run: object) -> float:
    started = time.monotonic()
    run()  # type: ignore[operator]
    return round(time.monotonic() - started, 1)


def bare_engine(rows: list[DomainRecord], config: StackConfig, work: Path) -> dict[str, float]:
    penv = pulumi_environment(work_dir=work, environ=PASS)
    current = {"rows": rows}

    def run_program() -> None:
        program.build(current["rows"], config)

    stack = open_stack(
        penv, project=PROJECT, stack="bare", program=run_program, work_dir=work / "bare"
    )
    first = _timed(stack.up)
    same = _timed(stack.up)
    current["rows"] = _changed(rows)
    one = _timed(stack.up)
    return {"first": first, "unchanged": same, "one_tenant": one}


def project_reconcile(
    rows: list[DomainRecord], config: StackConfig, work: Path
) -> dict[str, float]:
    penv = pulumi_environment(work_dir=work, environ=PASS)
    stack = EnvironmentStack(penv, config, work_dir=work)
    remote = ensure_bare_remote(work / "nm-kube-config.git")
    repo = GitOpsRepo(GitSettings(remote_url=remote, worktree=work / "worktree"))
    current = {"rows": rows}

    def reconcile() -> None:
        reconcile_once(
            stack=stack,
            load_records=lambda: current["rows"],
            git=repo,
            tracer=trace.get_tracer("bench"),
            hold_refused=True,
            skip_unchanged=True,
        )

    first = _timed(reconcile)
    same = _timed(reconcile)
    current["rows"] = _changed(rows)
    one = _timed(reconcile)
    return {"first": first, "unchanged": same, "one_tenant": one}


def measure(n: int) -> dict[str, object]:
    config = parse_stack_config({"deletionCap": "100000"}, environment="staging")
    rows = records(n)
    with tempfile.TemporaryDirectory(prefix="pd-bare-") as bare_dir:
        sys.stderr.write(f"{n} tenants: bare engine...\n")
        bare = bare_engine(rows, config, Path(bare_dir))
    with tempfile.TemporaryDirectory(prefix="pd-reconcile-") as project_dir:
        sys.stderr.write(f"{n} tenants: reconcile...\n")
        ours = project_reconcile(rows, config, Path(project_dir))
    return {"tenants": n, "resources": 3 * n, "bare": bare, "reconcile": ours}


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| tenants | bare engine: first / unchanged / one tenant | reconcile: first / unchanged "
        "/ one tenant | ratio |",
        "|---:|---|---|---|",
    ]
    for row in rows:
        bare: dict[str, float] = row["bare"]  # type: ignore[assignment]
        ours: dict[str, float] = row["reconcile"]  # type: ignore[assignment]
        keys = ("first", "unchanged", "one_tenant")
        ratios = " / ".join(f"{ours[k] / bare[k]:.2f}x" if bare[k] else "-" for k in keys)
        lines.append(
            f"| {row['tenants']} | {' / '.join(f'{bare[k]} s' for k in keys)} "
            f"| {' / '.join(f'{ours[k]} s' for k in keys)} | {ratios} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="reconcile vs the bare engine")
    parser.add_argument("sizes", nargs="*", type=int, default=[10, 100])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(n) for n in args.sizes]
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        sys.stdout.write(table(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
