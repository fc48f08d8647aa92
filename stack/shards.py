"""An environment's stacks: one EnvironmentStack per shard, driven as one.

`EnvironmentStacks` offers what the CLI, the web pages and the benchmarks call
on a single stack (preview, plan, up, recover, refresh, the state objects) and
runs it shard by shard, summing the results. The reconciler goes further and
runs only the shards whose desired state changed (reconciler.environment_reconcile).
With `shards: 1` (the default) there is one stack named after the environment,
exactly as before sharding existed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import StackConfig
from core.digest import RecordedRun
from core.records import DomainRecord
from stack.automation import POLICY_PACK, EnvironmentStack, Progress, RefusedRun, RunSummary
from stack.reshard import prepare_layout
from stack.run_records import RunRecords
from stack.toolchain import PulumiEnvironment


class EnvironmentStacks:
    """Every stack of one environment (`config.shards` of them)."""

    def __init__(
        self,
        penv: PulumiEnvironment,
        config: StackConfig,
        *,
        work_dir: Path,
        policy_pack: Path | None = POLICY_PACK,
        policy_pack_config: Path | None = None,
        run_records: RunRecords | None = None,
    ) -> None:
        self.penv = penv
        self.config = config
        self.stack_name = config.environment
        self.work_dir = work_dir
        self.run_records = run_records
        self._layout_checked = False
        self.shards = [
            EnvironmentStack(
                penv,
                config,
                work_dir=work_dir,
                policy_pack=policy_pack,
                policy_pack_config=policy_pack_config,
                shard=shard,
                run_records=run_records,
            )
            for shard in range(config.shards)
        ]

    def check_layout(self) -> None:
        """Refuse to run while the stacks are not laid out for `config.shards`.

        After a change of the shard count, tenants must first move between stacks
        (`portal-domains stack reshard`); a reconcile that ran the new layout
        directly would create tenants in their new stacks while the old ones still
        hold them, and the old stacks' next run would delete them. An environment
        without stacks is laid out here. Checked once per instance: a reshard is
        done with the workers stopped (see the runbook).
        """
        if self._layout_checked:
            return
        problem = prepare_layout(
            self.penv, self.config, work_dir=self.work_dir, run_records=self.run_records
        )
        if problem is not None:
            raise RefusedRun("reshard_needed", problem)
        self._layout_checked = True

    # ------------------------------------------------------------------ reads
    def state_objects(self) -> list[dict[str, Any]]:
        return [item for shard in self.shards for item in shard.state_objects()]

    def stack_tenants(self) -> list[str]:
        return sorted({slug for shard in self.shards for slug in shard.stack_tenants()})

    def lock_files(self) -> list[Path]:
        return [lock for shard in self.shards for lock in shard.lock_files()]

    def last_run(self) -> RecordedRun | None:
        """The oldest shard's last run (None if any shard has none)."""
        runs = [shard.last_run() for shard in self.shards]
        known = [run for run in runs if run is not None]
        if len(known) != len(runs):
            return None
        return min(known, key=lambda run: run.full_pass_at)

    # ------------------------------------------------------------------ runs
    def preview(
        self,
        records: Sequence[DomainRecord],
        *,
        progress: Progress | None = None,
        replace: Sequence[str] = (),
    ) -> RunSummary:
        return combine(
            self.config.environment,
            [
                shard.preview(records, progress=progress, replace=own(shard, replace))
                for shard in self.shards
            ],
        )

    def plan(
        self,
        records: Sequence[DomainRecord],
        *,
        replace: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> RunSummary:
        return combine(
            self.config.environment,
            [
                shard.plan(records, replace=own(shard, replace), progress=progress)
                for shard in self.shards
            ],
        )

    def up(
        self,
        records: Sequence[DomainRecord],
        *,
        allow_empty: bool = False,
        confirm_deletions: bool = False,
        progress: Progress | None = None,
        replace: Sequence[str] = (),
        hold_refused: bool = False,
    ) -> RunSummary:
        return combine(
            self.config.environment,
            [
                shard.up(
                    records,
                    allow_empty=allow_empty,
                    confirm_deletions=confirm_deletions,
                    progress=progress,
                    replace=own(shard, replace),
                    hold_refused=hold_refused,
                )
                for shard in self.shards
            ],
        )

    def refresh(self, *, progress: Progress | None = None) -> dict[str, int]:
        total: dict[str, int] = {}
        for shard in self.shards:
            for op, count in shard.refresh(progress=progress).items():
                total[op] = total.get(op, 0) + count
        return total

    def recover(self, *, progress: Progress | None = None) -> list[str]:
        steps: list[str] = []
        for shard in self.shards:
            prefix = f"{shard.stack_name}: " if len(self.shards) > 1 else ""
            steps.extend(prefix + step for step in shard.recover(progress=progress))
        return steps


def own(shard: EnvironmentStack, urns: Sequence[str]) -> list[str]:
    """The URNs of `shard`'s own stack (urn:pulumi:<stack>::...)."""
    return [urn for urn in urns if urn.startswith(f"urn:pulumi:{shard.stack_name}::")]


def combine(environment: str, summaries: Sequence[RunSummary]) -> RunSummary:
    """One summary for the environment from its shards' (one shard: that one, renamed)."""
    if len(summaries) == 1:
        return dataclasses.replace(summaries[0], environment=environment)
    counts: dict[str, int] = {}
    for summary in summaries:
        for op, count in summary.counts.items():
            counts[op] = counts.get(op, 0) + count
    held_reasons = sorted({s.held_reason for s in summaries if s.held_reason})
    return RunSummary(
        environment=environment,
        operation=summaries[0].operation if summaries else "up",
        counts=counts,
        tenants=sorted((t for s in summaries for t in s.tenants), key=lambda t: t.slug),
        desired_tenants=sorted({t for s in summaries for t in s.desired_tenants}),
        stack_tenants_before=sorted({t for s in summaries for t in s.stack_tenants_before}),
        policy_violations=[v for s in summaries for v in s.policy_violations],
        duration_seconds=sum(s.duration_seconds for s in summaries),
        accounted_for=sorted({t for s in summaries for t in s.accounted_for}),
        held_tenants=sorted({t for s in summaries for t in s.held_tenants}),
        held_reason="; ".join(held_reasons) or None,
        apply_urns=[u for s in summaries for u in s.apply_urns],
    )
