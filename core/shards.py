"""Which stack of an environment holds a tenant: sharding by a stable hash.

An environment's tenants are spread over `shards` Pulumi stacks so that one
tenant's change runs the engine over its shard only, not the whole fleet.
The shard is a pure function of the tenant id and the shard count: SHA-256 of
the canonical (lowercase) tenant UUID, first 8 bytes as an integer, modulo
the count. It never depends on the process (no `hash()`), the row order or
the tenant's prefix, so every worker on every machine agrees.

Stack names: with one shard the stack keeps the environment's name
(`staging`), so existing single-stack state needs no migration; with N > 1
the stacks are `<env>-0` ... `<env>-<N-1>`. The environment's ClusterIssuer is
declared by shard 0 only. Changing N moves tenants between stacks with
`pulumi state move` (stack.reshard), never by deleting and re-creating them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

MAX_SHARDS = 256
ISSUER_SHARD = 0

_SHARD_STACK = re.compile(r"^(?P<env>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<shard>0|[1-9][0-9]*)$")


def shard_of(tenant_id: str, count: int) -> int:
    """The shard (0 .. count-1) that holds `tenant_id`'s objects."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shard count must be in [1, {MAX_SHARDS}], got {count}")
    if count == 1:
        return 0
    digest = hashlib.sha256(tenant_id.strip().lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def stack_name(environment: str, shard: int, count: int) -> str:
    """The Pulumi stack of shard `shard` of `count` in `environment`."""
    if not 0 <= shard < count:
        raise ValueError(f"shard {shard} is not in [0, {count})")
    return environment if count == 1 else f"{environment}-{shard}"


def stack_names(environment: str, count: int) -> list[str]:
    return [stack_name(environment, shard, count) for shard in range(count)]


def belongs_to(environment: str, name: str) -> bool:
    """Whether stack `name` is one of `environment`'s, under any shard count."""
    if name == environment:
        return True
    match = _SHARD_STACK.match(name)
    return match is not None and match.group("env") == environment


def parse_stack_name(name: str, environments: Iterable[str]) -> tuple[str, int | None]:
    """(environment, shard) of a stack name: `staging` -> (staging, None), `staging-3` ->
    (staging, 3). A name that is no environment's stack raises ValueError."""
    known = set(environments)
    if name in known:
        return name, None
    match = _SHARD_STACK.match(name)
    if match is None or match.group("env") not in known:
        raise ValueError(f"{name!r} is not a stack of any environment ({', '.join(sorted(known))})")
    return match.group("env"), int(match.group("shard"))


class _HasTenant(Protocol):
    @property
    def tenant_id(self) -> str: ...


T = TypeVar("T", bound=_HasTenant)


def partition(items: Iterable[T], count: int) -> list[list[T]]:
    """`items` (anything with a tenant_id) split by shard, in their order."""
    shards: list[list[T]] = [[] for _ in range(count)]
    for item in items:
        shards[shard_of(item.tenant_id, count)].append(item)
    return shards


def spread(shard_sizes: Sequence[int]) -> float:
    """Largest shard over the mean (1.0 = perfectly even); for reports."""
    total = sum(shard_sizes)
    if not shard_sizes or total == 0:
        return 1.0
    return max(shard_sizes) / (total / len(shard_sizes))
