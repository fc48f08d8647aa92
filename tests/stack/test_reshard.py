"""Resharding: the pure plan (core.reshard), and real `pulumi state move`s (stack.reshard).

The real tests drive the engine in gitops mode against a file backend in a
temporary folder. What proves that a move re-creates nothing: after it, an `up`
of every new shard stack with that shard's records (core.shards.partition) has
no step but "same" — while the same preview before the move creates every
object (the control), and the moved objects keep their `created` time.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.config import StackConfig, parse_stack_config
from core.records import DomainRecord
from core.reshard import Drop, Move, StackHoldings, UnplacedTenant, plan_reshard
from core.shards import ISSUER_SHARD, partition, shard_of, stack_name, stack_names
from core.status import DomainStatus
from stack import program
from stack.automation import EnvironmentStack, shard_config
from stack.reshard import Resharder, ReshardRefused, StackState, read_state, reshard
from stack.toolchain import PulumiEnvironment, pulumi_environment
from stack.workspace import open_stack

ENV = "staging"

# Five tenants; with 3 shards: 1 -> 1, 2 -> 0, 3 -> 0, 4 -> 2, 5 -> 2.
TENANTS = [
    (f"{i}{i}{i}{i}{i}{i}{i}", f"{i}{i}{i}{i}{i}{i}{i}{i}-aaaa-4aaa-8aaa-00000000000{i}")
    for i in range(1, 6)
]
IDS = dict(TENANTS)


def test_the_fixture_tenants_cover_every_shard() -> None:
    # The real tests below mean something only if every shard gets tenants.
    assert sorted({shard_of(tid, 3) for _, tid in TENANTS}) == [0, 1, 2]
    assert sorted({shard_of(tid, 2) for _, tid in TENANTS}) == [0, 1]


# --------------------------------------------------------------------- the plan


def _holdings(stack: str, slugs: Iterable[str], *, issuer: bool = False) -> StackHoldings:
    return StackHoldings(stack=stack, tenants={s: IDS[s] for s in slugs}, issuer=issuer)


def _where(count: int) -> dict[str, str]:
    return {slug: stack_name(ENV, shard_of(tid, count), count) for slug, tid in TENANTS}


def _apply(plan_moves: Sequence[Move], holdings: Sequence[StackHoldings]) -> dict[str, str]:
    """slug -> stack after the moves (checks each source held what it moves)."""
    where = {slug: h.stack for h in holdings for slug in h.tenants}
    for move in plan_moves:
        for slug in move.slugs:
            assert where[slug] == move.source
            where[slug] = move.dest
    return where


def test_one_to_three_moves_every_tenant_to_its_shard_and_the_issuer_to_shard_0() -> None:
    held = [_holdings(ENV, IDS, issuer=True)]
    plan = plan_reshard(ENV, held, 3)
    assert plan.stacks == ("staging-0", "staging-1", "staging-2")
    assert plan.moves == (
        Move(source=ENV, dest="staging-0", slugs=("2222222", "3333333"), issuer=True),
        Move(source=ENV, dest="staging-1", slugs=("1111111",)),
        Move(source=ENV, dest="staging-2", slugs=("4444444", "5555555")),
    )
    assert _apply(plan.moves, held) == _where(3)
    assert plan.remove == (ENV,)
    assert plan.drops == ()
    assert plan.unplaced == ()
    assert plan.kept == ()


def test_three_to_one_merges_everything_into_the_environment_stack() -> None:
    held = [
        _holdings("staging-2", ["4444444", "5555555"]),
        _holdings("staging-0", ["2222222", "3333333"], issuer=True),
        _holdings("staging-1", ["1111111"]),
    ]
    plan = plan_reshard(ENV, held, 1)
    assert plan.moves == (
        Move(source="staging-0", dest=ENV, slugs=("2222222", "3333333"), issuer=True),
        Move(source="staging-1", dest=ENV, slugs=("1111111",)),
        Move(source="staging-2", dest=ENV, slugs=("4444444", "5555555")),
    )
    assert plan.remove == ("staging-0", "staging-1", "staging-2")
    assert plan.existing == ("staging-0", "staging-1", "staging-2")


def test_three_to_two_moves_only_the_tenants_whose_shard_changes() -> None:
    held = [
        _holdings("staging-0", ["2222222", "3333333"], issuer=True),
        _holdings("staging-1", ["1111111"]),
        _holdings("staging-2", ["4444444", "5555555"]),
    ]
    plan = plan_reshard(ENV, held, 2)
    # shards of 2: 1 -> 0, 2 -> 0, 3 -> 0, 4 -> 0, 5 -> 1
    assert plan.moves == (
        Move(source="staging-1", dest="staging-0", slugs=("1111111",)),
        Move(source="staging-2", dest="staging-0", slugs=("4444444",)),
        Move(source="staging-2", dest="staging-1", slugs=("5555555",)),
    )
    assert _apply(plan.moves, held) == _where(2)
    assert plan.remove == ("staging-2",)


def test_a_placed_environment_plans_nothing_and_the_order_of_the_input_does_not_matter() -> None:
    where = _where(3)
    held = [
        _holdings(name, [s for s, w in where.items() if w == name], issuer=name == "staging-0")
        for name in stack_names(ENV, 3)
    ]
    plan = plan_reshard(ENV, held, 3)
    assert plan.is_noop
    assert plan.moves == ()
    assert plan.remove == ()
    shuffled = list(reversed(held))
    random.Random(4).shuffle(shuffled)
    assert plan_reshard(ENV, shuffled, 3) == plan
    big = plan_reshard(ENV, [_holdings(ENV, IDS, issuer=True)], 3)
    assert plan_reshard(ENV, [_holdings(ENV, list(reversed(IDS)), issuer=True)], 3) == big


def test_an_unknown_tenant_stays_put_and_keeps_its_stack() -> None:
    held = [
        StackHoldings(stack=ENV, tenants={"1111111": IDS["1111111"], "9999999": None}),
    ]
    plan = plan_reshard(ENV, held, 3)
    assert plan.moves == (Move(source=ENV, dest="staging-1", slugs=("1111111",)),)
    assert plan.unplaced == (
        UnplacedTenant(stack=ENV, slug="9999999", reason="no tenant id in the stack state"),
    )
    assert plan.remove == ()
    assert plan.kept == (ENV,)


def test_copies_that_disagree_on_the_tenant_id_are_not_placed() -> None:
    held = [
        StackHoldings(stack="staging-0", tenants={"1111111": IDS["1111111"]}),
        StackHoldings(stack="staging-1", tenants={"1111111": IDS["2222222"]}),
    ]
    plan = plan_reshard(ENV, held, 1)
    assert plan.moves == ()
    assert [(u.stack, u.slug) for u in plan.unplaced] == [
        ("staging-0", "1111111"),
        ("staging-1", "1111111"),
    ]
    assert "disagree" in plan.unplaced[0].reason
    assert plan.kept == ("staging-0", "staging-1")


def test_a_misplaced_issuer_moves_alone_to_shard_0() -> None:
    where = _where(3)
    held = [
        _holdings(name, [s for s, w in where.items() if w == name], issuer=name == "staging-2")
        for name in stack_names(ENV, 3)
    ]
    plan = plan_reshard(ENV, held, 3)
    assert stack_name(ENV, ISSUER_SHARD, 3) == "staging-0"
    assert plan.moves == (Move(source="staging-2", dest="staging-0", slugs=(), issuer=True),)
    assert plan.remove == ()


def test_copies_left_by_a_crash_between_the_two_state_writes_are_dropped() -> None:
    # The move wrote staging-1 (destination) but not staging (source): both hold 1111111.
    held = [
        _holdings(ENV, ["1111111", "2222222"], issuer=True),
        _holdings("staging-1", ["1111111"]),
        _holdings("staging-0", [], issuer=True),
    ]
    plan = plan_reshard(ENV, held, 3)
    assert plan.moves == (Move(source=ENV, dest="staging-0", slugs=("2222222",)),)
    assert plan.drops == (Drop(stack=ENV, slugs=("1111111",), issuer=True),)
    assert plan.remove == (ENV,)
    # Held twice and by neither destination: moved from the first, dropped from the other.
    twice = [_holdings("staging-1", ["2222222"]), _holdings("staging-2", ["2222222"])]
    other = plan_reshard(ENV, twice, 1)
    assert other.moves == (Move(source="staging-1", dest=ENV, slugs=("2222222",)),)
    assert other.drops == (Drop(stack="staging-2", slugs=("2222222",)),)
    assert other.remove == ("staging-1", "staging-2")


def test_the_plan_refuses_other_environments_stacks_and_bad_counts() -> None:
    with pytest.raises(ValueError, match="not stacks of environment"):
        plan_reshard(ENV, [_holdings("prod", [])], 2)
    with pytest.raises(ValueError, match="shard"):
        plan_reshard(ENV, [_holdings(ENV, [])], 0)
    with pytest.raises(ValueError, match="twice"):
        plan_reshard(ENV, [_holdings(ENV, []), _holdings(ENV, [])], 2)
    empty = plan_reshard(ENV, [_holdings("staging-3", [])], 2)
    assert empty.remove == ("staging-3",)
    assert empty.moves == ()


def test_read_state_takes_the_tenant_id_from_the_component_or_its_childrens_labels() -> None:
    root = "urn:pulumi:staging::portal-domains::pulumi:pulumi:Stack::portal-domains-staging"
    comp = "urn:pulumi:staging::portal-domains::portal-domains:index:PortalDomain"
    child = f"{comp}$kubernetes:cert-manager.io/v1:Certificate"
    labels = {"portal-domains.algapsa.com/tenant-id": IDS["2222222"]}
    one, two = f"{comp}::1111111", f"{comp}::2222222"
    deployment: dict[str, Any] = {
        "resources": [
            {"urn": root, "type": "pulumi:pulumi:Stack"},
            {"urn": "urn:...::pulumi:providers:kubernetes::gitops", "type": "pulumi:providers:k"},
            {
                "urn": "urn:...::kubernetes:cert-manager.io/v1:ClusterIssuer::cluster-issuer",
                "type": "kubernetes:cert-manager.io/v1:ClusterIssuer",
                "parent": root,
            },
            {
                "urn": one,
                "type": program.COMPONENT_TYPE,
                "parent": root,
                "outputs": {"tenantId": IDS["1111111"].upper()},
            },
            {"urn": f"{child}::1111111-certificate", "type": "kubernetes:x", "parent": one},
            {"urn": two, "type": program.COMPONENT_TYPE, "parent": root},
            {
                "urn": f"{child}::2222222-certificate",
                "type": "kubernetes:x",
                "parent": two,
                "outputs": {"metadata": {"labels": labels}},
            },
            {"urn": f"{comp}::3333333", "type": program.COMPONENT_TYPE, "parent": root},
            {"urn": "urn:...::random:index:Thing::x", "type": "random:index:Thing"},
        ],
        "pending_operations": [{"type": "creating"}],
    }
    state = read_state(ENV, deployment)
    assert dict(state.holdings.tenants) == {
        "1111111": IDS["1111111"],
        "2222222": IDS["2222222"],
        "3333333": None,
    }
    assert state.holdings.issuer
    assert state.urns["1111111"] == (one, f"{child}::1111111-certificate")
    assert state.other_urns == ("urn:...::random:index:Thing::x",)
    assert state.pending_operations == 1


def test_a_stack_with_pending_operations_is_refused_before_anything_changes(
    work_dir: Path,
) -> None:
    class Frozen(Resharder):
        """States as given; any Pulumi command fails the test."""

        def __init__(self, states: dict[str, StackState]) -> None:
            super().__init__(
                pulumi_environment(work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "t"}),
                parse_stack_config({}, environment=ENV),
                work_dir=work_dir,
            )
            self.frozen = states

        def states(self) -> dict[str, StackState]:
            return self.frozen

        def _pulumi(self, args: Sequence[str], *, cwd: Path) -> str:
            raise AssertionError(f"ran pulumi {args}")

    def state(stack: str, pending: int) -> StackState:
        holdings = _holdings(stack, IDS, issuer=True)
        urns = {slug: (f"urn:{slug}",) for slug in IDS}
        return StackState(holdings=holdings, urns=urns, pending_operations=pending)

    with pytest.raises(ReshardRefused, match="staging hold pending operations"):
        Frozen({ENV: state(ENV, 1)}).run(3)
    assert Frozen({ENV: state(ENV, 1)}).run(3, dry_run=True).plan.moved_tenants == 5


# ------------------------------------------------------------- the real engine


def records(slugs: Sequence[str] | None = None) -> list[DomainRecord]:
    return [
        DomainRecord(
            tenant_id=tid,
            prefix=slug,
            domain=f"portal.tenant{slug[0]}.example.com",
            canonical_host=f"{slug}.portal.algapsa.com",
            certificate_secret_name=f"portal-domain-{slug}-tls",
            status=DomainStatus.ACTIVE,
        )
        for slug, tid in TENANTS
        if slugs is None or slug in slugs
    ]


@pytest.fixture
def penv(work_dir: Path) -> PulumiEnvironment:
    return pulumi_environment(work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})


@pytest.fixture
def config() -> StackConfig:
    return parse_stack_config({}, environment=ENV)


def shard_stack(
    penv: PulumiEnvironment, config: StackConfig, work_dir: Path, shard: int, count: int
) -> EnvironmentStack:
    # Its stack is stack_name(ENV, shard, count); only shard 0 declares the issuer.
    return EnvironmentStack(
        penv,
        dataclasses.replace(config, shards=count),
        work_dir=work_dir,
        shard=shard,
        policy_pack=None,
    )


def engine(
    penv: PulumiEnvironment,
    config: StackConfig,
    work_dir: Path,
    shard: int,
    count: int,
    rows: Sequence[DomainRecord],
    *,
    up: bool = False,
) -> dict[str, int]:
    """The program of shard `shard` with `rows`, previewed or applied: every step of
    the engine (stack, provider, issuer, components and objects) by operation."""
    name = stack_name(ENV, shard, count)
    cfg = shard_config(config, shard)
    snapshot = tuple(rows)
    stack = open_stack(
        penv,
        project="portal-domains",
        stack=name,
        program=lambda: program.build(snapshot, cfg),
        work_dir=work_dir / "workspaces" / name,
    )
    if up:
        changes = stack.up().summary.resource_changes
    else:
        changes = stack.preview().change_summary
    return {str(op): n for op, n in (changes or {}).items()}


def created_times(resharder: Resharder, stack: str) -> dict[str, str]:
    """URN name -> the `created` time Pulumi recorded for the resource."""
    exported = open_stack(
        resharder.penv,
        project="portal-domains",
        stack=stack,
        program=lambda: None,
        work_dir=resharder.work_dir / "workspaces" / stack,
    ).export_stack()
    return {
        r["urn"].rsplit("::", 1)[-1]: r["created"]
        for r in (exported.deployment or {}).get("resources", [])
        if "created" in r and not r["type"].startswith(("pulumi:pulumi", "pulumi:providers"))
    }


def assert_every_shard_is_unchanged(
    penv: PulumiEnvironment, config: StackConfig, work_dir: Path, count: int
) -> None:
    """An up of each shard with its records: every step "same" (no create, update,
    replace or delete of anything: stack, provider, issuer, components, objects)."""
    for shard, rows in enumerate(partition(records(), count)):
        steps = engine(penv, config, work_dir, shard, count, rows, up=True)
        # stack + provider + (issuer in shard 0) + 4 per tenant
        assert steps == {"same": 2 + (shard == ISSUER_SHARD) + 4 * len(rows)}, (shard, steps)


@pytest.mark.pulumi
def test_resharding_one_to_three_and_back_moves_state_without_recreating(
    work_dir: Path, penv: PulumiEnvironment, config: StackConfig
) -> None:
    single = shard_stack(penv, config, work_dir, 0, 1)
    assert single.up(records()).counts["create"] == 15
    resharder = Resharder(penv, config, work_dir=work_dir)
    assert resharder.list_stacks() == [ENV]
    before = created_times(resharder, ENV)
    # What a reconcile checks first: the single stack is laid out for 1 shard, not 3.
    assert resharder.layout_problem(1) is None
    problem = resharder.layout_problem(3)
    assert problem is not None
    assert "stack(s) staging are not part of the 3-shard layout" in problem

    # Control: without the move, every shard's up would create its tenants' objects
    # (and shard 0 the issuer). The assertions below would see these creates.
    for shard, rows in enumerate(partition(records(), 3)):
        steps = engine(penv, config, work_dir, shard, 3, rows)
        assert steps.get("create", 0) == 2 + (shard == ISSUER_SHARD) + 4 * len(rows), steps

    dry = reshard(penv, config, 3, work_dir=work_dir, dry_run=True)
    assert dry.dry_run
    assert not dry.changed
    assert [m.dest for m in dry.plan.moves] == ["staging-0", "staging-1", "staging-2"]
    assert resharder.list_stacks() == [ENV, "staging-0", "staging-1", "staging-2"]
    assert resharder.read(ENV).holdings.tenants.keys() == IDS.keys()  # the dry run moved nothing

    lines: list[str] = []
    report = reshard(penv, config, 3, work_dir=work_dir, progress=lines.append)
    assert report.moved == dry.plan.moves
    assert report.removed == (ENV,)
    assert report.sizes == {"staging-0": 2, "staging-1": 1, "staging-2": 2}
    assert any("moved staging -> staging-1: 1111111" in line for line in lines), lines
    assert any("removed stack staging" in line for line in lines), lines
    assert resharder.list_stacks() == ["staging-0", "staging-1", "staging-2"]
    assert not (work_dir / "workspaces" / ENV).exists()
    # The same resources, not new ones: Pulumi's creation times came along.
    after = {
        name: created
        for stack in stack_names(ENV, 3)
        for name, created in created_times(resharder, stack).items()
    }
    assert after == before
    assert resharder.read("staging-0").holdings.issuer

    assert_every_shard_is_unchanged(penv, config, work_dir, 3)
    assert resharder.layout_problem(3) is None
    assert resharder.layout_problem(1) is not None
    assert resharder.tagged(3) == ["staging-0", "staging-1", "staging-2"]

    # Idempotent: a second run finds every tenant placed.
    again = reshard(penv, config, 3, work_dir=work_dir)
    assert again.plan.is_noop
    assert not again.changed
    assert resharder.list_stacks() == ["staging-0", "staging-1", "staging-2"]

    # And back: 3 -> 1, into a stack that no longer exists.
    back = reshard(penv, config, 1, work_dir=work_dir)
    assert [(m.source, m.dest) for m in back.moved] == [
        ("staging-0", ENV),
        ("staging-1", ENV),
        ("staging-2", ENV),
    ]
    assert back.removed == ("staging-0", "staging-1", "staging-2")
    assert resharder.list_stacks() == [ENV]
    assert created_times(resharder, ENV) == before
    assert_every_shard_is_unchanged(penv, config, work_dir, 1)
    assert reshard(penv, config, 1, work_dir=work_dir).plan.is_noop
    assert resharder.layout_problem(1) is None
    assert resharder.layout_problem(3) is not None


@pytest.mark.pulumi
def test_three_to_two_and_a_run_interrupted_between_moves_is_finished_by_the_next(
    work_dir: Path, penv: PulumiEnvironment, config: StackConfig
) -> None:
    for shard, rows in enumerate(partition(records(), 3)):
        engine(penv, config, work_dir, shard, 3, rows, up=True)
    resharder = Resharder(penv, config, work_dir=work_dir)
    plan, _ = resharder.plan(2)
    assert len(plan.moves) == 3
    assert plan.remove == ("staging-2",)
    # A reconcile that recorded its run would skip the engine while its digest holds.
    recorded = shard_stack(penv, config, work_dir, 0, 3)
    recorded.record_run("0" * 64, at=datetime.now(UTC))
    assert recorded.last_run() is not None

    # A run killed right after its first move.
    class Killed(Exception):
        pass

    def kill_after_a_move(line: str) -> None:
        if line.lstrip().startswith("moved"):
            raise Killed(line)

    # Stacks a reconcile created (never tagged by a reshard) are flagged as well.
    assert "were not laid out for 3 shard(s)" in (resharder.layout_problem(3) or "")
    with pytest.raises(Killed):
        reshard(penv, config, 2, work_dir=work_dir, progress=kill_after_a_move)
    assert resharder.read(plan.moves[0].dest).holdings.tenants.keys() >= set(plan.moves[0].slugs)
    # Half done is neither layout: a reconcile would refuse either count.
    assert resharder.layout_problem(2) is not None
    assert resharder.layout_problem(3) is not None
    report = reshard(penv, config, 2, work_dir=work_dir)
    assert report.moved == plan.moves[1:]  # the tenant already moved is not moved again
    assert report.removed == ("staging-2",)
    assert resharder.list_stacks() == ["staging-0", "staging-1"]
    assert recorded.last_run() is None  # the moves changed staging-0: forgotten
    assert resharder.layout_problem(2) is None
    assert_every_shard_is_unchanged(penv, config, work_dir, 2)


@pytest.mark.pulumi
def test_copies_left_by_a_crash_inside_a_move_are_dropped_and_nothing_is_recreated(
    work_dir: Path, penv: PulumiEnvironment, config: StackConfig
) -> None:
    engine(penv, config, work_dir, 0, 1, records(), up=True)
    resharder = Resharder(penv, config, work_dir=work_dir)
    source = open_stack(
        penv,
        project="portal-domains",
        stack=ENV,
        program=lambda: None,
        work_dir=work_dir / "workspaces" / ENV,
    )
    saved = source.export_stack()
    reshard(penv, config, 3, work_dir=work_dir)
    # A move writes the destination's state, then the source's: put the source's
    # back as a crash between the two writes leaves it (every tenant in two stacks).
    source = open_stack(
        penv,
        project="portal-domains",
        stack=ENV,
        program=lambda: None,
        work_dir=work_dir / "workspaces" / ENV,
    )
    source.import_stack(saved)
    plan, _ = resharder.plan(3)
    assert plan.moves == ()
    assert plan.drops == (Drop(stack=ENV, slugs=tuple(sorted(IDS)), issuer=True),)

    report = reshard(penv, config, 3, work_dir=work_dir)
    assert report.dropped == plan.drops
    assert report.removed == (ENV,)
    assert resharder.list_stacks() == ["staging-0", "staging-1", "staging-2"]
    assert_every_shard_is_unchanged(penv, config, work_dir, 3)


@pytest.mark.pulumi
def test_a_new_environment_is_laid_out_before_its_first_reconcile(
    work_dir: Path, penv: PulumiEnvironment, config: StackConfig
) -> None:
    resharder = Resharder(penv, config, work_dir=work_dir)
    assert resharder.list_stacks() == []
    assert resharder.prepare_layout(3) is None
    assert resharder.list_stacks() == ["staging-0", "staging-1", "staging-2"]
    assert resharder.tagged(3) == ["staging-0", "staging-1", "staging-2"]
    # A stack outside the layout (a reconcile run with another count) is flagged, not
    # laid out again: its tenants belong elsewhere. (Untagged stacks inside the layout
    # are flagged too: see the 3 -> 2 test.)
    engine(penv, config, work_dir, 3, 4, records(["1111111"]), up=True)
    problem = resharder.prepare_layout(3)
    assert problem is not None
    assert "staging-3 are not part of the 3-shard layout" in problem
