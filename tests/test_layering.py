"""Layering rules that keep the Temporal sandbox and the pure core lean.

Workflow modules are re-imported by the sandbox for every run, so they must not
pull in Pulumi or SQLAlchemy; the core must not pull in any adapter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pulumi", "pulumi_kubernetes", "sqlalchemy", "psycopg", "git", "dns", "temporalio.client")


def _modules_loaded_by(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["reconciler.workflows", "reconciler.payloads"])
def test_workflow_modules_import_neither_pulumi_nor_the_database(module: str) -> None:
    loaded = _modules_loaded_by(module)
    offenders = sorted(m for m in loaded for h in HEAVY[:5] if m == h or m.startswith(h + "."))
    assert offenders == []


@pytest.mark.parametrize(
    "module",
    [
        "core.hostnames",
        "core.canonical",
        "core.status",
        "core.config",
        "core.manifests",
        "core.records",
        "core.guidance",
    ],
)
def test_the_core_imports_no_adapter(module: str) -> None:
    loaded = _modules_loaded_by(module)
    heavy = sorted(m for m in loaded for h in HEAVY if m == h or m.startswith(h + "."))
    ours = sorted(m for m in loaded if m.split(".")[0] in {"db", "stack", "reconciler", "policies"})
    assert heavy == []
    assert ours == []
