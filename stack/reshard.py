"""Change an environment's shard count by moving tenants between stack states.

`pulumi state move` re-homes a tenant's resources (its PortalDomain component and
the component's three CustomResources) from one stack's state to another's,
objects and IDs unchanged: the next `up` of the destination with that shard's
records sees them as "same", so nothing is deleted and re-created (in cluster
mode nothing touches the API server, in gitops mode the files do not change).

What the CLI (v3.274.1, pkg/cmd/pulumi/state/state_move.go) does, and what this
module relies on:

- `pulumi state move --source S --dest D --yes URN...` moves the named resources
  and their direct children (we pass the component and its children explicitly,
  so nothing depends on that). A moved resource whose parent is not moved is
  re-parented to D's root stack, which changes its URN; the component is always
  moved with its children, so their URNs only change stack name.
- Providers are never moved (naming one is an error) but copied: D gets a copy
  of S's `gitops`/`cluster` provider with the same ID, or reuses D's own when it
  has the same URN and the same ID or inputs; a same-named provider with other
  inputs is an error. The copy in S stays there, with nothing using it.
- D must exist ("no stack named ... found" otherwise), and a D without a
  secrets manager in its state gets one from the project directory the command
  runs in: it runs in D's automation workspace (`<work_dir>/workspaces/<D>`,
  with the `Pulumi.<D>.yaml` holding its encryption salt).
- A URN already in D is an error ("resource ... already exists in destination
  stack"), a URN not in S only a warning; D's state is written before S's, so a
  crash between the two leaves the tenant in both. core.reshard plans those
  stale copies as drops (`pulumi state delete`, state only).
- Pending operations (a crashed update) of S or D would be discarded by the
  move's writes, so such a stack is refused: recover it first.
- Each state write takes the stack's lock (a running `up` makes the move fail),
  but the move reads both states before: nothing else may update the
  environment's stacks during a reshard (stop the reconciles).

Re-running is how a crashed reshard finishes: every run reads the states again
and plans from what they hold, so a tenant already in its destination is not
moved again. The stack tag SHARDS_TAG says which count a *completed* reshard
laid a stack out for (cleared first by a run that changes anything, set last);
`layout_problem` turns it into the check a reconcile makes before it runs. The
run records (stack.run_records) of every stack a reshard changes are forgotten,
so no reconcile skips such a stack as unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.config import StackConfig
from core.errors import ErrorKind, PortalDomainsError
from core.manifests import LABEL_TENANT
from core.reshard import Drop, Move, ReshardPlan, StackHoldings, plan_reshard, stack_order
from core.shards import belongs_to, stack_names
from core.text import redact_urls
from stack.automation import PROJECT
from stack.program import COMPONENT_TYPE, ISSUER_RESOURCE
from stack.run_records import FileRunRecords, RunRecords
from stack.toolchain import PulumiEnvironment

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Tenants per `pulumi state move` (4 URNs each): keeps the command line well
# under the kernel's limits; each call reads and writes both states once.
MOVE_BATCH = 100
# Stack tag: the shard count a completed reshard laid the stack out for. A run that
# changes anything first sets it to RESHARDING on every stack of the environment,
# and only its successful end tags the new set (all of its stacks, created empty
# when no tenant lands there): a crash in between cannot look like a finished layout.
SHARDS_TAG = "portal-domains:shards"
RESHARDING = "resharding"
_ROOT_STACK = "pulumi:pulumi:Stack"
_PROVIDER_PREFIX = "pulumi:providers:"


class ReshardError(PortalDomainsError, RuntimeError):
    """A Pulumi command of the reshard failed; running the reshard again resumes it."""

    code = "reshard_failed"
    kind = ErrorKind.FAILED
    retryable = True


class ReshardRefused(PortalDomainsError, RuntimeError):
    """A stack is not in a state to be moved from (pending operations of a crashed update)."""

    code = "reshard_refused"
    kind = ErrorKind.REFUSED


# ---------------------------------------------------------------------- state


@dataclass(frozen=True, kw_only=True)
class StackState:
    """One stack's state as the reshard sees it."""

    holdings: StackHoldings
    urns: Mapping[str, tuple[str, ...]]  # slug -> the component's URN, then its children's
    issuer_urn: str | None = None
    pending_operations: int = 0
    # Resources that are neither a tenant's, the issuer, a provider nor the root stack.
    other_urns: tuple[str, ...] = ()


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _tenant_id(resources: Iterable[Mapping[str, Any]]) -> str | None:
    """The one tenant id the component's outputs and its children's labels agree on."""
    found: set[str] = set()
    for res in resources:
        outputs = res.get("outputs") or {}
        if isinstance(outputs.get("tenantId"), str):
            found.add(outputs["tenantId"].strip().lower())
        labels = (outputs.get("metadata") or {}).get("labels") or {}
        if isinstance(labels, Mapping) and isinstance(labels.get(LABEL_TENANT), str):
            found.add(labels[LABEL_TENANT].strip().lower())
    found.discard("")
    return found.pop() if len(found) == 1 else None


def read_state(stack: str, deployment: Mapping[str, Any]) -> StackState:
    """Tenants (PortalDomain components and their descendants) and the issuer of a state."""
    resources: list[Mapping[str, Any]] = list(deployment.get("resources") or [])
    children: dict[str, list[Mapping[str, Any]]] = {}
    for res in resources:
        if res.get("parent"):
            children.setdefault(res["parent"], []).append(res)

    def descendants(urn: str) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        for child in children.get(urn, []):
            found.append(child)
            found.extend(descendants(child["urn"]))
        return found

    roots = {res["urn"] for res in resources if res.get("type") == _ROOT_STACK}
    tenants: dict[str, str | None] = {}
    urns: dict[str, tuple[str, ...]] = {}
    claimed: set[str] = set()
    issuer_urn: str | None = None
    for res in resources:
        urn = res["urn"]
        if res.get("type") == COMPONENT_TYPE:
            slug = _name(urn)
            tree = descendants(urn)
            tenants[slug] = _tenant_id([res, *tree])
            urns[slug] = (urn, *(child["urn"] for child in tree))
            claimed.update(urns[slug])
        elif (
            _name(urn) == ISSUER_RESOURCE
            and str(res.get("type", "")).startswith("kubernetes:")
            and res.get("parent") in roots
        ):
            issuer_urn = urn
            claimed.add(urn)
    other = tuple(
        res["urn"]
        for res in resources
        if res["urn"] not in claimed
        and res.get("type") != _ROOT_STACK
        and not str(res.get("type", "")).startswith(_PROVIDER_PREFIX)
    )
    return StackState(
        holdings=StackHoldings(stack=stack, tenants=tenants, issuer=issuer_urn is not None),
        urns=urns,
        issuer_urn=issuer_urn,
        pending_operations=len(deployment.get("pending_operations") or []),
        other_urns=other,
    )


# --------------------------------------------------------------------- report


@dataclass(frozen=True, kw_only=True)
class ReshardReport:
    plan: ReshardPlan
    dry_run: bool
    moved: tuple[Move, ...] = ()  # moves done (none in a dry run)
    dropped: tuple[Drop, ...] = ()  # stale copies dropped
    removed: tuple[str, ...] = ()  # stacks removed
    sizes: Mapping[str, int] = field(default_factory=dict)  # stack -> tenants, afterwards

    @property
    def changed(self) -> bool:
        return bool(self.moved or self.dropped or self.removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.plan.environment,
            "count": self.plan.count,
            "dry_run": self.dry_run,
            "stacks": list(self.plan.stacks),
            "stacks_before": list(self.plan.existing),
            "planned": self.plan.as_dict(),
            "moved": [m.as_dict() for m in self.moved],
            "dropped": [d.as_dict() for d in self.dropped],
            "removed": list(self.removed),
            "kept": list(self.plan.kept),
            "unplaced": [u.as_dict() for u in self.plan.unplaced],
            "sizes": dict(self.sizes),
        }


# ------------------------------------------------------------------- resharder


class Resharder:
    """The stacks of one environment, read and re-homed with the Pulumi CLI."""

    def __init__(
        self,
        penv: PulumiEnvironment,
        config: StackConfig,
        *,
        work_dir: Path,
        run_records: RunRecords | None = None,
    ) -> None:
        self.penv = penv
        self.config = config
        self.environment = config.environment
        self.work_dir = work_dir
        # Where the reconciles record their last runs (EnvironmentStack's store):
        # a stack whose state a reshard changes must not be skipped as unchanged.
        self.run_records: RunRecords = run_records or FileRunRecords(work_dir)
        # A project folder of our own for commands that name their stack (ls, export, rm):
        # never one of the stacks' workspaces, which a removal deletes.
        self.project_dir = work_dir / "reshard" / self.environment

    # ---------------------------------------------------------------- commands
    def _pulumi(self, args: Sequence[str], *, cwd: Path) -> str:
        binary = self.penv.toolchain.executable("pulumi") or "pulumi"
        command = [binary, *args, "--non-interactive", "--color", "never"]
        log.debug("running %s in %s", " ".join(command), cwd)
        result = subprocess.run(
            command,
            cwd=cwd,
            env={**os.environ, **self.penv.env()},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            detail = redact_urls((result.stderr.strip() or result.stdout.strip())[-2000:])
            raise ReshardError(f"`pulumi {' '.join(args[:2])}` failed: {detail}")
        return result.stdout

    def _write_project(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        settings = {"name": PROJECT, "runtime": "python", "backend": {"url": self.penv.backend_url}}
        (folder / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=True))
        return folder

    def _project(self) -> Path:
        return self._write_project(self.project_dir)

    def _workspace(self, stack: str, existing: set[str]) -> Path:
        """The stack's automation workspace (`<work_dir>/workspaces/<stack>`, where
        EnvironmentStack keeps its `Pulumi.<stack>.yaml`), the stack created in it
        (passphrase secrets, as open_stack does) when it does not exist yet."""
        path = self.work_dir / "workspaces" / stack
        if not (path / "Pulumi.yaml").is_file():
            self._write_project(path)
        if stack not in existing:
            self._pulumi(
                ["stack", "init", stack, "--secrets-provider", "passphrase", "--no-select"],
                cwd=path,
            )
            existing.add(stack)
        return path

    def _tag(self, stack: str, value: str) -> None:
        self._pulumi(
            ["stack", "tag", "set", SHARDS_TAG, value, "--stack", stack], cwd=self._project()
        )

    def _forget(self, stack: str) -> None:
        """The stack's next reconcile runs the engine whatever its change digest says."""
        self.run_records.forget(stack)

    # ------------------------------------------------------------------- reads
    def list_stacks(self) -> list[str]:
        """The environment's existing stacks, in shard order."""
        listed = json.loads(self._pulumi(["stack", "ls", "--json"], cwd=self._project()) or "[]")
        names = {str(item["name"]).rsplit("/", 1)[-1] for item in listed}
        found = [n for n in names if belongs_to(self.environment, n)]
        return sorted(found, key=lambda n: stack_order(self.environment, n))

    def tagged(self, count: int) -> list[str]:
        """The environment's stacks a completed reshard laid out for `count` shards."""
        listed = json.loads(
            self._pulumi(
                ["stack", "ls", "--json", "--tag", f"{SHARDS_TAG}={count}"], cwd=self._project()
            )
            or "[]"
        )
        names = {str(item["name"]).rsplit("/", 1)[-1] for item in listed}
        return sorted(
            (n for n in names if belongs_to(self.environment, n)),
            key=lambda n: stack_order(self.environment, n),
        )

    def layout_problem(self, count: int) -> str | None:
        """Why the environment's stacks are not laid out for `count` shards, or None.

        Two `pulumi stack ls` calls, whatever the count: cheap enough to run before
        every reconcile. None also for an environment without stacks (nothing to
        move) and for the single unsharded stack of count 1 (it holds everything).
        """
        existing = self.list_stacks()
        expected = stack_names(self.environment, count)
        extra = [name for name in existing if name not in expected]
        hint = f"run `portal-domains stack reshard --env {self.environment}`"
        if extra:
            return (
                f"{self.environment}: stack(s) {', '.join(extra)} are not part of the "
                f"{count}-shard layout ({', '.join(expected)}): {hint}"
            )
        if not existing or (count == 1 and existing == [self.environment]):
            # No stack: nothing to move (prepare_layout creates them tagged). The
            # single unsharded stack: it holds everything, whatever made it.
            return None
        tagged = set(self.tagged(count))
        unready = [name for name in expected if name not in tagged]
        if unready:
            return (
                f"{self.environment}: stack(s) {', '.join(unready)} were not laid out for "
                f"{count} shard(s) by a completed reshard: {hint}"
            )
        return None

    def prepare_layout(self, count: int) -> str | None:
        """What a reconcile calls before it runs any shard (once per environment, not
        per shard): an environment without stacks is laid out for `count` shards
        (its stacks created empty and tagged, so that no untagged stack is ever
        taken for a finished layout); then the layout problem, None when none."""
        if not self.list_stacks():
            self.run(count)
        return self.layout_problem(count)

    def read(self, stack: str) -> StackState:
        exported = json.loads(
            self._pulumi(["stack", "export", "--stack", stack], cwd=self._project()) or "{}"
        )
        return read_state(stack, exported.get("deployment") or {})

    def states(self) -> dict[str, StackState]:
        return {name: self.read(name) for name in self.list_stacks()}

    def plan(self, count: int) -> tuple[ReshardPlan, dict[str, StackState]]:
        states = self.states()
        plan = plan_reshard(self.environment, [s.holdings for s in states.values()], count)
        return plan, states

    # ------------------------------------------------------------------ writes
    def _move(
        self, move: Move, state: StackState, existing: set[str], progress: Progress | None
    ) -> None:
        dest_dir = self._workspace(move.dest, existing)
        missing = [slug for slug in move.slugs if slug not in state.urns]
        if missing or (move.issuer and state.issuer_urn is None):
            raise ReshardError(f"{move.source} no longer holds {missing or ['the issuer']}")
        batches: list[list[str]] = []
        for start in range(0, max(len(move.slugs), 1), MOVE_BATCH):
            batch = [
                urn for slug in move.slugs[start : start + MOVE_BATCH] for urn in state.urns[slug]
            ]
            batches.append(batch)
        if move.issuer and state.issuer_urn is not None:
            batches[0].insert(0, state.issuer_urn)
        for batch in batches:
            if not batch:
                continue
            self._pulumi(
                ["state", "move", "--source", move.source, "--dest", move.dest, "--yes", *batch],
                cwd=dest_dir,
            )
        if progress:
            what = list(move.slugs) + (["the ClusterIssuer"] if move.issuer else [])
            progress(f"  moved {move.source} -> {move.dest}: {', '.join(what)}")

    def _drop(self, drop: Drop, state: StackState, progress: Progress | None) -> None:
        urns = [urn for slug in drop.slugs for urn in state.urns.get(slug, ())]
        if drop.issuer and state.issuer_urn is not None:
            urns.append(state.issuer_urn)
        if urns:
            self._pulumi(
                ["state", "delete", "--stack", drop.stack, "--yes", *urns],
                cwd=self._project(),
            )
        if progress:
            what = list(drop.slugs) + (["the ClusterIssuer"] if drop.issuer else [])
            progress(f"  dropped stale copies from {drop.stack}: {', '.join(what)}")

    def _remove(self, stack: str, progress: Progress | None) -> None:
        state = self.read(stack)
        if not state.holdings.empty or state.other_urns or state.pending_operations:
            raise ReshardError(f"stack {stack} is not empty; not removing it")
        # --force: what is left is the root stack and the providers the moves copied
        # from it, which own no object.
        self._pulumi(["stack", "rm", "--stack", stack, "--yes", "--force"], cwd=self._project())
        self._forget(stack)  # a shared record store outlives the stack and its workspace
        shutil.rmtree(self.work_dir / "workspaces" / stack, ignore_errors=True)
        if progress:
            progress(f"  removed stack {stack} (empty, not one of the new stacks)")

    def run(
        self, count: int, *, dry_run: bool = False, progress: Progress | None = None
    ) -> ReshardReport:
        plan, states = self.plan(count)
        if progress:
            progress(
                f"{self.environment}: {len(plan.existing)} stack(s) "
                f"({', '.join(plan.existing) or 'none'}) -> {count} shard(s) "
                f"({', '.join(plan.stacks)}): {plan.moved_tenants} tenant(s) to move"
                + (", dry run" if dry_run else "")
            )
        for unplaced in plan.unplaced:
            if progress:
                progress(f"  left in {unplaced.stack}: {unplaced.slug} ({unplaced.reason})")
        if dry_run:
            return ReshardReport(
                plan=plan,
                dry_run=True,
                sizes=_sizes(states.values(), environment=self.environment),
            )
        touched = {
            *(m.source for m in plan.moves),
            *(m.dest for m in plan.moves),
            *(d.stack for d in plan.drops),
        }
        busy = sorted(
            name for name in touched if name in states and states[name].pending_operations
        )
        if busy:
            raise ReshardRefused(
                f"stack(s) {', '.join(busy)} hold pending operations of a crashed update, "
                "which a state move would discard: recover them first"
            )
        if not plan.is_noop:
            for name in plan.existing:
                self._tag(name, RESHARDING)
        # First, so that a run killed after a move cannot leave a stack whose last-run
        # record vouches for a state it no longer has (the rerun skips that move).
        for name in touched:
            self._forget(name)
        existing = set(states)
        for move in plan.moves:
            self._move(move, states[move.source], existing, progress)
        # The moves changed the states: drop by the URNs the stacks hold now.
        for drop in plan.drops:
            self._drop(drop, self.read(drop.stack), progress)
        for stack in plan.remove:
            self._remove(stack, progress)
        after, final = self.plan(count)
        if not after.is_noop:
            raise ReshardError(
                f"the reshard did not converge; still planned: {json.dumps(after.as_dict())}"
            )
        existing = set(final)
        done = set(self.tagged(count))
        for name in plan.stacks:
            if name not in done:
                self._workspace(name, existing)  # created empty when no tenant landed there
                self._tag(name, str(count))
        if progress and not done >= set(plan.stacks):
            progress(f"  tagged {', '.join(plan.stacks)} {SHARDS_TAG}={count}")
        return ReshardReport(
            plan=plan,
            dry_run=False,
            moved=plan.moves,
            dropped=plan.drops,
            removed=plan.remove,
            sizes=_sizes(final.values(), also=plan.stacks, environment=self.environment),
        )


def _sizes(
    states: Iterable[StackState], *, environment: str, also: Iterable[str] = ()
) -> dict[str, int]:
    """Tenants per stack, in stack order; the stacks in `also` with 0 when absent."""
    sizes = {s.holdings.stack: len(s.holdings.tenants) for s in states}
    for name in also:
        sizes.setdefault(name, 0)
    return {n: sizes[n] for n in sorted(sizes, key=lambda n: stack_order(environment, n))}


def reshard(
    penv: PulumiEnvironment,
    config: StackConfig,
    count: int,
    *,
    work_dir: Path,
    dry_run: bool = False,
    progress: Progress | None = None,
    run_records: RunRecords | None = None,
) -> ReshardReport:
    """Move `config.environment`'s tenants to `count` shards (see the module docstring).

    `run_records`: the reconciles' run record store (default: this host's files);
    the record of every stack the reshard changes or removes is forgotten."""
    resharder = Resharder(penv, config, work_dir=work_dir, run_records=run_records)
    return resharder.run(count, dry_run=dry_run, progress=progress)


def prepare_layout(
    penv: PulumiEnvironment,
    config: StackConfig,
    *,
    work_dir: Path,
    run_records: RunRecords | None = None,
) -> str | None:
    """Before a reconcile: why the environment's stacks are not laid out for
    `config.shards` shards (run `stack reshard`), or None (an environment without
    stacks is laid out first). See Resharder.prepare_layout."""
    resharder = Resharder(penv, config, work_dir=work_dir, run_records=run_records)
    return resharder.prepare_layout(config.shards)
