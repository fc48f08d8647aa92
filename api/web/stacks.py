"""The environment's Pulumi stack as the operator console reads and repairs it.

One `ConsoleStack` per server process (its environment), built lazily through
the composition root (reconciler.wiring.environment_stack), with a lock so two
console requests never drive the same stack at once.

- `tenant(slug)`: a tenant's objects in the stack state and the file the
  reconciler exports for it to nm-kube-config (stack.export.render_files: the
  same pure function, so the same bytes).
- `health()`: whether the stack exists, its lock files and pending operations
  (what a crashed run leaves behind; EnvironmentStack.recover repairs both).
- `recover()`: EnvironmentStack.recover; the caller checks first that the
  environment workflow is not reconciling.
- `plan(records)`: EnvironmentStack.plan, what the worker's next run would do
  (per-tenant changes, held deletions and why); the same check first. A plan
  that fails raises PlanFailed with the engine's or the policy pack's words.

A stack that does not exist yet is said so, never created by a read. With the
file backend (the embedded default) that is known from its checkpoint file;
other backends are asked through the automation API, which selects (and, if
missing, creates an empty) stack.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from core.digest import RecordedRun
from core.records import DomainRecord
from core.settings import Settings
from reconciler.wiring import environment_stack
from stack.automation import (
    PROJECT,
    EnvironmentStack,
    RefusedRun,
    RunSummary,
    StackOperationError,
)
from stack.export import render_files
from stack.shards import EnvironmentStacks

Build = Callable[[Settings, str], EnvironmentStacks]


class StackUnavailable(RuntimeError):
    """The stack cannot be read or changed here; the message says why, in words."""


class PlanFailed(StackUnavailable):
    """The preview ran and failed: a policy violation, a refused run, an engine error."""


@dataclass(frozen=True, kw_only=True)
class DeployedObject:
    kind: str
    name: str
    namespace: str


@dataclass(frozen=True, kw_only=True)
class TenantDeployment:
    objects: list[DeployedObject]
    path: str  # the file's path in nm-kube-config
    file: str | None  # its content as the reconciler exports it; None: no objects


@dataclass(frozen=True, kw_only=True)
class StackHealth:
    environment: str
    backend: str
    exists: bool
    locks: list[str]
    pending: list[str]  # "<type> <urn>" per pending operation
    last_run: RecordedRun | None

    @property
    def healthy(self) -> bool:
        return not self.locks and not self.pending


class ConsoleStack:
    def __init__(self, settings: Settings, environment: str, build: Build = environment_stack):
        self._settings = settings
        self.environment = environment
        self._build = build
        self._stack: EnvironmentStacks | None = None
        self._lock = threading.Lock()

    def _get(self) -> EnvironmentStacks:
        if self._stack is None:
            self._stack = self._build(self._settings, self.environment)
        return self._stack

    # ---------------------------------------------------------------- reading

    def _checkpoint(self, stacks: EnvironmentStacks) -> dict[str, Any] | None:
        """The environment's latest deployments, merged over its shards; None: no stack yet."""
        found = [self._shard_checkpoint(shard) for shard in stacks.shards]
        present = [latest for latest in found if latest is not None]
        if not present:
            return None
        return {
            "pending_operations": [
                op for latest in present for op in (latest.get("pending_operations") or [])
            ]
        }

    def _checkpoint_file(self, stack: EnvironmentStack) -> Path | None:
        """The file backend's checkpoint of the stack (None: not a file backend)."""
        url = stack.penv.backend_url
        if not url.startswith("file://"):
            return None
        return (
            Path(url.removeprefix("file://"))
            / ".pulumi"
            / "stacks"
            / PROJECT
            / f"{stack.stack_name}.json"
        )

    def _shard_checkpoint(self, stack: EnvironmentStack) -> dict[str, Any] | None:
        """The latest deployment in the file backend's checkpoint; None: no stack yet."""
        path = self._checkpoint_file(stack)
        if path is None:
            raise StackUnavailable("not a file backend")
        zipped = path.with_name(path.name + ".gz")
        try:
            if path.is_file():
                data = json.loads(path.read_text())
            elif zipped.is_file():
                with gzip.open(zipped, "rt") as handle:
                    data = json.load(handle)
            else:
                return None
        except (OSError, ValueError) as exc:
            raise StackUnavailable(
                f"the checkpoint of stack {stack.stack_name} cannot be read ({exc}); "
                "`portal-domains recover --env ...` repairs a half-written one"
            ) from exc
        latest = (data.get("checkpoint") or {}).get("latest") or {}
        return latest if isinstance(latest, dict) else {}

    def _need_pulumi(self, stack: EnvironmentStacks) -> None:
        if stack.penv.toolchain.executable("pulumi") is None:
            raise StackUnavailable("no Pulumi CLI on this server (scripts/setup.sh installs it)")

    def exists(self) -> bool:
        stack = self._get()
        if self._checkpoint_file(stack.shards[0]) is None:
            return True  # asked through the automation API by the callers
        return self._checkpoint(stack) is not None

    def tenant(self, slug: str) -> TenantDeployment | None:
        """The tenant's objects and nm-kube-config file; None: the stack does not exist yet."""
        with self._lock:
            stack = self._get()
            if not self.exists():
                return None
            self._need_pulumi(stack)
            try:
                objects = [o for o in stack.state_objects() if o["slug"] == slug]
            except auto.CommandError as exc:
                raise StackUnavailable(
                    f"the state of stack {stack.stack_name} cannot be read: {str(exc)[-300:]}"
                ) from exc
        files = render_files(objects, environment=stack.stack_name)
        deployed = []
        for item in objects:
            outputs = item.get("outputs") or {}
            metadata = outputs.get("metadata") or {}
            deployed.append(
                DeployedObject(
                    kind=str(outputs.get("kind", "?")),
                    name=str(metadata.get("name", "?")),
                    namespace=str(metadata.get("namespace", "")),
                )
            )
        return TenantDeployment(
            objects=sorted(deployed, key=lambda d: (d.kind, d.name)),
            path=f"{stack.config.manifest_root}/{slug}.yaml",
            file=files.get(slug),
        )

    def health(self) -> StackHealth:
        with self._lock:
            stack = self._get()
            backend = stack.penv.backend_url.split("://", 1)[0]
            if self._checkpoint_file(stack.shards[0]) is None:
                raise StackUnavailable(
                    f"stack health is read from the file backend only (this one is {backend}); "
                    f"`portal-domains recover --env {self.environment}` works with every backend"
                )
            latest = self._checkpoint(stack)
            # The same lock files EnvironmentStack.recover releases.
            locks = [path.name for path in stack.lock_files()]
            pending = [
                f"{op.get('type', '?')} {(op.get('resource') or {}).get('urn', '?')}"
                for op in ((latest or {}).get("pending_operations") or [])
            ]
            return StackHealth(
                environment=self.environment,
                backend=backend,
                exists=latest is not None,
                locks=locks,
                pending=pending,
                last_run=stack.last_run(),
            )

    # ---------------------------------------------------------------- repairing

    def recover(self) -> list[str]:
        """EnvironmentStack.recover: what it did, step by step."""
        with self._lock:
            stack = self._get()
            if not self.exists():
                raise StackUnavailable(
                    f"stack {stack.stack_name} does not exist yet: there is nothing to recover"
                )
            self._need_pulumi(stack)
            try:
                return stack.recover()
            except (auto.CommandError, StackOperationError) as exc:
                raise StackUnavailable(f"recover failed: {str(exc)[-500:]}") from exc

    # ---------------------------------------------------------------- previewing

    def plan(self, records: Sequence[DomainRecord]) -> RunSummary:
        """EnvironmentStack.plan of `records`; a stack that does not exist is not created."""
        with self._lock:
            stack = self._get()
            if not self.exists():
                raise StackUnavailable(
                    f"stack {stack.stack_name} does not exist yet (no reconcile has run "
                    "in this environment): there is nothing to compare with. The first "
                    "reconcile creates it with every verified domain."
                )
            self._need_pulumi(stack)
            try:
                return stack.plan(records)
            except (RefusedRun, StackOperationError) as exc:
                # PolicyViolationsError (a StackOperationError) lists every violation.
                raise PlanFailed(f"the preview failed: {str(exc)[-2000:]}") from exc
            except auto.CommandError as exc:
                raise PlanFailed(f"the preview failed: {str(exc)[-500:]}") from exc
