"""A reconcile whose desired state equals the last successful run's runs no engine pass.

Real Pulumi engine (file backend, gitops mode) and a real bare nm-kube-config.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import git
import pytest
from opentelemetry import trace

from adapters.gitops import GitOpsRepo, GitSettings, ensure_bare_remote
from core.config import parse_stack_config
from core.records import DomainRecord
from reconciler.environment_reconcile import ReconcileReport, reconcile_once
from stack.automation import EnvironmentStack
from tests.e2e.test_cluster_mode import make_stack, tenants

pytestmark = pytest.mark.pulumi


class Engine:
    """Counts the stack's engine runs (up) and can forbid them."""

    def __init__(self, stack: EnvironmentStack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        self.forbidden = False
        real_up = stack.up

        def counting_up(*args: Any, **kwargs: Any) -> Any:
            assert not self.forbidden, "the engine ran although nothing changed"
            self.runs += 1
            return real_up(*args, **kwargs)

        monkeypatch.setattr(stack, "up", counting_up)


@pytest.fixture
def setup(
    work_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[EnvironmentStack, GitOpsRepo, str, Engine]:
    stack = make_stack(work_dir, parse_stack_config({}, environment="staging"))
    remote = ensure_bare_remote(tmp_path / "nm-kube-config.git")
    repo = GitOpsRepo(GitSettings(remote_url=remote, worktree=tmp_path / "worktree"))
    return stack, repo, remote, Engine(stack, monkeypatch)


def _reconcile(
    stack: EnvironmentStack,
    repo: GitOpsRepo,
    rows: list[DomainRecord],
    every: timedelta = timedelta(hours=1),
) -> ReconcileReport:
    return reconcile_once(
        stack=stack,
        load_records=lambda: rows,
        git=repo,
        tracer=trace.get_tracer("test"),
        skip_unchanged=True,
        full_pass_every=every,
    )


def test_nothing_changed_means_no_engine_run_and_a_change_runs_it_again(
    setup: tuple[EnvironmentStack, GitOpsRepo, str, Engine],
) -> None:
    stack, repo, remote, engine = setup
    rows = tenants(2)
    first = _reconcile(stack, repo, rows)
    assert first.skipped is None
    assert engine.runs == 1

    engine.forbidden = True
    again = _reconcile(stack, repo, rows)
    assert again.skipped is not None
    assert "nothing changed" in again.skipped
    assert again.summary.desired_tenants == sorted(r.prefix for r in rows)
    assert again.files == first.files  # still exported from the state

    # A file edited by hand in nm-kube-config is repaired even without an engine run.
    clone = git.Repo.clone_from(remote, stack.work_dir.parent / "by-hand")
    path = Path(clone.working_dir) / stack.config.manifest_root / f"{rows[0].prefix}.yaml"
    path.write_text(path.read_text().replace(rows[0].domain, "hijacked.example.com"))
    clone.git.commit("-am", "edited by hand")
    clone.git.push("origin", "HEAD:main")
    repaired = _reconcile(stack, repo, rows)
    assert repaired.skipped is not None
    assert repaired.published is not None
    assert repaired.published.commit is not None
    tree = git.Repo(remote).commit("main").tree / stack.config.manifest_root
    assert rows[0].domain in (tree / f"{rows[0].prefix}.yaml").data_stream.read().decode()

    engine.forbidden = False
    more = [*rows, *tenants(1)]
    changed = _reconcile(stack, repo, more)
    assert changed.skipped is None
    assert engine.runs == 2
    assert changed.summary.counts["create"] == 3


def test_a_full_pass_runs_when_due_and_an_out_of_band_up_forgets_the_record(
    setup: tuple[EnvironmentStack, GitOpsRepo, str, Engine],
) -> None:
    stack, repo, _, engine = setup
    rows = tenants(1)
    _reconcile(stack, repo, rows)
    assert _reconcile(stack, repo, rows, every=timedelta(0)).skipped is None  # due at once
    assert engine.runs == 2
    assert _reconcile(stack, repo, rows).skipped is not None
    # Someone runs `portal-domains up` by hand: the record no longer vouches for the stack.
    stack.up(rows)
    assert engine.runs == 3
    assert _reconcile(stack, repo, rows).skipped is None
    assert engine.runs == 4
