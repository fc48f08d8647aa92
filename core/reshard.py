"""What changing an environment's shard count moves: a pure plan over the stacks' holdings.

Input: for every existing stack of the environment, the tenants its state holds
(slug -> tenant id, None when the state does not say) and whether it holds the
environment's ClusterIssuer. Output: the moves that put every tenant in the
stack `core.shards` assigns it under the new count (and the issuer in shard
`ISSUER_SHARD`'s), grouped per (source, destination) pair; the stale copies to
drop; the stacks left empty outside the new set, to remove.

Stale copies: `pulumi state move` writes the destination's state first and the
source's second, so a crash between the two writes leaves a tenant in both. The
copy in the destination is kept, the other one is dropped from its stack's state
(state only: both name the same Kubernetes objects). A tenant held by several
stacks none of which is its destination is moved from the first (in stack
order) and dropped from the others.

A tenant whose id is unknown (or whose copies disagree on it) cannot be placed:
it stays where it is and is reported, and its stack is kept even when it is not
part of the new set. Every list is in a deterministic order: stacks by shard
number (the unsharded name first), slugs alphabetically.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.shards import ISSUER_SHARD, MAX_SHARDS, belongs_to, shard_of, stack_name, stack_names


@dataclass(frozen=True, kw_only=True)
class StackHoldings:
    """What one stack's state holds."""

    stack: str
    tenants: Mapping[str, str | None] = field(default_factory=dict)  # slug -> tenant id
    issuer: bool = False

    @property
    def empty(self) -> bool:
        return not self.tenants and not self.issuer


@dataclass(frozen=True, kw_only=True)
class Move:
    """Move `slugs` (and the issuer when `issuer`) from stack `source` to `dest`."""

    source: str
    dest: str
    slugs: tuple[str, ...]
    issuer: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dest": self.dest,
            "slugs": list(self.slugs),
            "issuer": self.issuer,
        }


@dataclass(frozen=True, kw_only=True)
class Drop:
    """Stale copies in `stack` of tenants (and the issuer) whose kept copy is in another stack."""

    stack: str
    slugs: tuple[str, ...]
    issuer: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "slugs": list(self.slugs), "issuer": self.issuer}


@dataclass(frozen=True, kw_only=True)
class UnplacedTenant:
    """A tenant left where it is: its id is unknown, or its copies disagree on it."""

    stack: str
    slug: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "slug": self.slug, "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class ReshardPlan:
    environment: str
    count: int
    stacks: tuple[str, ...]  # the stacks of the new count
    existing: tuple[str, ...]  # the environment's stacks before
    moves: tuple[Move, ...] = ()
    drops: tuple[Drop, ...] = ()
    unplaced: tuple[UnplacedTenant, ...] = ()
    remove: tuple[str, ...] = ()  # outside the new set and empty once the moves are done
    kept: tuple[str, ...] = ()  # outside the new set but still holding unplaced tenants

    @property
    def is_noop(self) -> bool:
        return not (self.moves or self.drops or self.remove)

    @property
    def moved_tenants(self) -> int:
        return sum(len(m.slugs) for m in self.moves)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "count": self.count,
            "stacks": list(self.stacks),
            "existing": list(self.existing),
            "moves": [m.as_dict() for m in self.moves],
            "drops": [d.as_dict() for d in self.drops],
            "unplaced": [u.as_dict() for u in self.unplaced],
            "remove": list(self.remove),
            "kept": list(self.kept),
        }


def stack_order(environment: str, name: str) -> tuple[int, int, str]:
    """Sort key: the unsharded stack first, then `<env>-<n>` by n, anything else last."""
    if name == environment:
        return (0, 0, name)
    prefix = f"{environment}-"
    suffix = name.removeprefix(prefix)
    if name.startswith(prefix) and suffix.isdigit():
        return (1, int(suffix), name)
    return (2, 0, name)


def plan_reshard(environment: str, holdings: Sequence[StackHoldings], count: int) -> ReshardPlan:
    """The moves, drops and removals that take `holdings` to `count` shards."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shard count must be in [1, {MAX_SHARDS}], got {count}")
    targets = stack_names(environment, count)
    order = {h.stack: stack_order(environment, h.stack) for h in holdings}
    if len(order) != len(holdings):
        raise ValueError("a stack is listed twice")
    foreign = sorted(name for name in order if not belongs_to(environment, name))
    if foreign:
        raise ValueError(f"stacks {foreign} are not stacks of environment {environment!r}")
    ordered = sorted(holdings, key=lambda h: order[h.stack])

    # slug -> the stacks holding it (in stack order) and the ids they report
    holders: dict[str, list[str]] = defaultdict(list)
    ids: dict[str, set[str | None]] = defaultdict(set)
    for held in ordered:
        for slug, tenant_id in held.tenants.items():
            holders[slug].append(held.stack)
            ids[slug].add(tenant_id.strip().lower() if tenant_id else None)

    moving: dict[tuple[str, str], list[str]] = defaultdict(list)
    dropping: dict[str, list[str]] = defaultdict(list)
    unplaced: list[UnplacedTenant] = []
    stays: dict[str, int] = defaultdict(int)  # stack -> tenants (or issuer) left in it

    for slug in sorted(holders):
        stacks = holders[slug]
        known = sorted(i for i in ids[slug] if i is not None)
        if None in ids[slug] or len(known) != 1:
            if len(known) > 1:
                reason = f"its copies disagree on the tenant id ({', '.join(known)})"
            else:
                reason = "no tenant id in the stack state"
            for name in stacks:
                unplaced.append(UnplacedTenant(stack=name, slug=slug, reason=reason))
                stays[name] += 1
            continue
        tenant_id = known[0]
        dest = stack_name(environment, shard_of(tenant_id, count), count)
        _place(slug, stacks, dest, moving, dropping)

    issuer_moving: set[tuple[str, str]] = set()
    issuer_dropping: set[str] = set()
    issuer_stacks = [h.stack for h in ordered if h.issuer]
    if issuer_stacks:
        dest = stack_name(environment, ISSUER_SHARD, count)
        pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
        drops: dict[str, list[str]] = defaultdict(list)
        _place("", issuer_stacks, dest, pairs, drops)
        issuer_moving.update(pairs)
        issuer_dropping.update(drops)

    moves = tuple(
        Move(
            source=source,
            dest=dest,
            slugs=tuple(sorted(moving.get((source, dest), []))),
            issuer=(source, dest) in issuer_moving,
        )
        for source, dest in sorted(
            {*moving, *issuer_moving},
            key=lambda pair: (
                stack_order(environment, pair[0]),
                stack_order(environment, pair[1]),
            ),
        )
    )
    drop_list = tuple(
        Drop(
            stack=name,
            slugs=tuple(sorted(dropping.get(name, []))),
            issuer=name in issuer_dropping,
        )
        for name in sorted({*dropping, *issuer_dropping}, key=lambda n: stack_order(environment, n))
    )
    remove = tuple(h.stack for h in ordered if h.stack not in targets and not stays[h.stack])
    kept = tuple(h.stack for h in ordered if h.stack not in targets and stays[h.stack])
    return ReshardPlan(
        environment=environment,
        count=count,
        stacks=tuple(targets),
        existing=tuple(h.stack for h in ordered),
        moves=moves,
        drops=drop_list,
        unplaced=tuple(unplaced),
        remove=remove,
        kept=kept,
    )


def _place(
    slug: str,
    stacks: Sequence[str],
    dest: str,
    moving: dict[tuple[str, str], list[str]],
    dropping: dict[str, list[str]],
) -> None:
    """One item held by `stacks` (in stack order) that belongs in `dest`."""
    if dest in stacks:
        keep = dest
    else:
        keep = stacks[0]
        moving[(keep, dest)].append(slug)
    for name in stacks:
        if name != keep:
            dropping[name].append(slug)
