"""Where a stack's last successful run is recorded: its digest and its objects.

The record lets a reconcile skip the engine for a shard whose desired state is
unchanged and still export that shard's files without reading its state
(core.digest). It is only as trustworthy as its reach: a record kept on one
host vouches for a stack only if nobody else can update that stack.

- `FileRunRecords` (the default): two files beside the stack's workspace. Used
  with the embedded per-host file backend, where this host is the only writer.
- A shared store (db.run_records.DbRunRecords, a table in the same PostgreSQL as
  the rows) for a shared Pulumi backend (`postgres://`): every worker reads and
  writes the same records, and any `up`, `refresh` or `recover` from any host
  forgets the record first, so none of them ever vouches for a stack that changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from core.digest import RecordedRun, StateObjects, valid_objects


class RunRecords(Protocol):
    shared: bool  # True: every worker of the environment sees the same records

    def load(self, stack: str) -> tuple[RecordedRun, StateObjects | None] | None: ...

    def save(self, stack: str, run: RecordedRun, objects: StateObjects | None) -> None: ...

    def forget(self, stack: str) -> None: ...


class FileRunRecords:
    """Records in `<work_dir>/workspaces/<stack>/`, written atomically."""

    shared = False

    def __init__(self, work_dir: Path) -> None:
        self.root = work_dir / "workspaces"

    def _files(self, stack: str) -> tuple[Path, Path]:
        folder = self.root / stack
        return folder / "last-successful-run.json", folder / "state-objects.json"

    def load(self, stack: str) -> tuple[RecordedRun, StateObjects | None] | None:
        run_file, objects_file = self._files(stack)
        try:
            run = RecordedRun.from_json(json.loads(run_file.read_text()))
        except (OSError, ValueError):
            return None
        if run is None:
            return None
        try:
            objects = valid_objects(json.loads(objects_file.read_text()))
        except (OSError, ValueError):
            objects = None
        return run, objects

    def save(self, stack: str, run: RecordedRun, objects: StateObjects | None) -> None:
        run_file, objects_file = self._files(stack)
        if objects is not None:
            _write_atomically(objects_file, json.dumps(objects))
        else:
            objects_file.unlink(missing_ok=True)
        _write_atomically(run_file, json.dumps(run.to_json()))

    def forget(self, stack: str) -> None:
        for path in self._files(stack):
            path.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
