"""Sharded stacks: each tenant lives in its shard's stack, and only changed shards run.

Real Pulumi engine (file backend, gitops mode) and a real bare nm-kube-config.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import git
import pytest
from opentelemetry import trace

from adapters.gitops import GitOpsRepo, GitSettings, ensure_bare_remote
from core.config import StackConfig, parse_stack_config
from core.records import DomainRecord
from core.shards import partition
from core.status import DomainStatus
from reconciler.environment_reconcile import ReconcileReport, reconcile_once
from stack.automation import ISSUER_FILE
from stack.shards import EnvironmentStacks
from stack.toolchain import pulumi_environment
from tests.e2e.test_cluster_mode import tenants

pytestmark = pytest.mark.pulumi

SHARDS = 3


class Engines:
    """Counts each shard's engine runs (`up`) and can forbid them per shard."""

    def __init__(self, stacks: EnvironmentStacks, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = [0] * len(stacks.shards)
        self.forbidden: set[int] = set()
        for index, shard in enumerate(stacks.shards):
            monkeypatch.setattr(shard, "up", self._counting(index, shard.up))

    def _counting(self, index: int, real_up: Any) -> Any:
        def up(*args: Any, **kwargs: Any) -> Any:
            assert index not in self.forbidden, f"shard {index} ran although it did not change"
            self.runs[index] += 1
            return real_up(*args, **kwargs)

        return up


def _stacks(work_dir: Path, config: StackConfig) -> EnvironmentStacks:
    penv = pulumi_environment(work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
    return EnvironmentStacks(penv, config, work_dir=work_dir)


def _reconcile(
    stacks: EnvironmentStacks, repo: GitOpsRepo, rows: Sequence[DomainRecord]
) -> ReconcileReport:
    return reconcile_once(
        stack=stacks,
        load_records=lambda: rows,
        git=repo,
        tracer=trace.get_tracer("test"),
        skip_unchanged=True,
        hold_refused=True,
    )


def _published(remote: str, config: StackConfig) -> dict[str, str]:
    tree = git.Repo(remote).commit("main").tree / config.manifest_root
    return {blob.name: blob.data_stream.read().decode() for blob in tree.blobs}


def _rows_spread_over_every_shard(count: int) -> list[DomainRecord]:
    while True:
        rows = tenants(count)
        if all(partition(rows, SHARDS)):
            return rows


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_tenants_live_in_their_shard_and_only_a_changed_shard_runs(
    environment: str, work_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if environment == "prod":
        monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "prod-test-passphrase-7c1e")
    config = parse_stack_config({"shards": str(SHARDS)}, environment=environment)
    stacks = _stacks(work_dir, config)
    assert [s.stack_name for s in stacks.shards] == [f"{environment}-{k}" for k in range(3)]
    remote = ensure_bare_remote(tmp_path / "nm-kube-config.git")
    repo = GitOpsRepo(GitSettings(remote_url=remote, worktree=tmp_path / "worktree"))
    engines = Engines(stacks, monkeypatch)
    rows = _rows_spread_over_every_shard(7)

    first = _reconcile(stacks, repo, rows)
    assert engines.runs == [1, 1, 1]
    assert first.shards_run == tuple(s.stack_name for s in stacks.shards)
    assert first.summary.counts["create"] == 7 * 3  # tenants' objects (the issuer is not one)
    # Each stack holds exactly its shard's tenants; the issuer only shard 0's.
    for index, (shard, mine) in enumerate(zip(stacks.shards, partition(rows, SHARDS), strict=True)):
        assert shard.stack_tenants() == sorted(r.prefix for r in mine)
        holds_issuer = any(o["slug"] == ISSUER_FILE for o in shard.state_objects())
        assert holds_issuer == (index == 0)
    files = _published(remote, config)
    assert set(files) == {f"{r.prefix}.yaml" for r in rows} | {f"{ISSUER_FILE}.yaml"}

    # Nothing changed: no shard runs, and every file is still published.
    engines.forbidden = {0, 1, 2}
    again = _reconcile(stacks, repo, rows)
    assert again.skipped is not None
    assert again.shards_run == ()
    assert again.files == first.files

    # One tenant's domain changes: only its shard runs.
    target = rows[4]
    index = next(k for k, part in enumerate(partition(rows, SHARDS)) if target in part)
    moved = dataclasses.replace(target, domain=f"new-{target.domain}")
    changed_rows = [moved if r is target else r for r in rows]
    engines.forbidden = {0, 1, 2} - {index}
    changed = _reconcile(stacks, repo, changed_rows)
    assert changed.shards_run == (stacks.shards[index].stack_name,)
    assert [t.slug for t in changed.summary.tenants] == [target.prefix]
    assert changed.published is not None
    assert changed.published.changed_slugs == (target.prefix,)
    assert moved.domain in _published(remote, config)[f"{target.prefix}.yaml"]

    # A disabled tenant is pruned from its shard's stack and from Git; the rest skip.
    gone = changed_rows[1]
    gone_index = next(k for k, part in enumerate(partition(changed_rows, SHARDS)) if gone in part)
    disabled = dataclasses.replace(gone, status=DomainStatus.DISABLED)
    final_rows = [disabled if r is gone else r for r in changed_rows]
    engines.forbidden = {0, 1, 2} - {gone_index}
    pruned = _reconcile(stacks, repo, final_rows)
    assert pruned.summary.counts["delete"] == 3
    assert gone.prefix not in stacks.shards[gone_index].stack_tenants()
    assert f"{gone.prefix}.yaml" not in _published(remote, config)
    assert len(_published(remote, config)) == 7  # six tenants and the issuer


def test_an_up_nothing_objects_to_is_one_engine_pass_and_an_objection_previews_first(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from policies.settings import VIRTUALSERVICE_DESTINATION_ALLOWED, render_policy_pack_config
    from stack.automation import EnvironmentStack, PolicyViolationsError

    config = parse_stack_config({}, environment="staging")
    penv = pulumi_environment(work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
    stack = EnvironmentStack(penv, config, work_dir=work_dir)
    previews: list[int] = []
    real_preview = stack.preview

    def counting_preview(*args: Any, **kwargs: Any) -> Any:
        previews.append(1)
        return real_preview(*args, **kwargs)

    monkeypatch.setattr(stack, "preview", counting_preview)
    rows = tenants(2)
    summary = stack.up(rows)
    assert summary.counts["create"] == 6
    assert previews == []  # guards and rules passed in-process: `up` only
    # No full checkpoint copy per update in .pulumi/backups (toolchain env).
    assert not list((penv.state_dir / ".pulumi" / "backups").rglob("*.json*"))
    assert list((penv.state_dir / ".pulumi" / "history").rglob("*.json*"))

    # A pack config that allows another backend only: the in-process rules object,
    # so the run previews first and is refused there, before anything changes.
    strict = work_dir / "strict-pack.json"
    document = json.loads(render_policy_pack_config(config))
    document[VIRTUALSERVICE_DESTINATION_ALLOWED]["backendHost"] = "other.msp.svc.cluster.local"
    strict.write_text(json.dumps(document))
    stack.policy_pack_config = strict
    with pytest.raises(PolicyViolationsError, match=VIRTUALSERVICE_DESTINATION_ALLOWED):
        stack.up([*rows, *tenants(1)])
    assert previews == [1]
    assert stack.stack_tenants() == sorted(r.prefix for r in rows)


def test_a_changed_shard_count_is_refused_until_reshard_moves_the_tenants(
    work_dir: Path, tmp_path: Path
) -> None:
    from stack.automation import RefusedRun
    from stack.reshard import reshard

    one = parse_stack_config({}, environment="prod")
    penv = pulumi_environment(
        work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "prod-test-passphrase-7c1e"}
    )
    remote = ensure_bare_remote(tmp_path / "nm-kube-config.git")
    repo = GitOpsRepo(GitSettings(remote_url=remote, worktree=tmp_path / "worktree"))
    rows = _rows_spread_over_every_shard(5)

    def stacks(config: StackConfig) -> EnvironmentStacks:
        return EnvironmentStacks(penv, config, work_dir=work_dir)

    assert _reconcile(stacks(one), repo, rows).summary.counts["create"] == 15
    three = dataclasses.replace(one, shards=SHARDS)
    with pytest.raises(RefusedRun, match="stack reshard --env prod") as refused:
        _reconcile(stacks(three), repo, rows)
    assert refused.value.code == "reshard_needed"

    report = reshard(penv, three, SHARDS, work_dir=work_dir)
    assert report.changed
    after = _reconcile(stacks(three), repo, rows)
    # The engine ran (the config changed) but nothing was created or deleted.
    assert after.shards_run == tuple(f"prod-{k}" for k in range(SHARDS))
    assert after.summary.counts == {"create": 0, "update": 0, "replace": 0, "delete": 0}
    assert set(_published(remote, three)) == {f"{r.prefix}.yaml" for r in rows} | {
        f"{ISSUER_FILE}.yaml"
    }
