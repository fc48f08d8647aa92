"""core.shards: a tenant's shard is a stable, process-independent function of its id."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from core.config import ConfigError, parse_stack_config
from core.shards import (
    belongs_to,
    parse_stack_name,
    partition,
    shard_of,
    spread,
    stack_name,
    stack_names,
)

# Pinned: a change of the hash would move every tenant to another stack, which
# must only ever happen through `portal-domains stack reshard`.
KNOWN = {
    ("00000000-0000-0000-0000-000000000001", 4): 1,
    ("6f1c2b9e-0d1a-4f5e-9a43-2c7d1e8b5a10", 4): 0,
    ("6f1c2b9e-0d1a-4f5e-9a43-2c7d1e8b5a10", 7): 3,
    ("ffffffff-ffff-ffff-ffff-ffffffffffff", 16): 2,
}


@pytest.mark.parametrize(("tenant_id", "count"), sorted(KNOWN))
def test_the_shard_of_a_tenant_is_pinned(tenant_id: str, count: int) -> None:
    assert shard_of(tenant_id, count) == KNOWN[(tenant_id, count)]
    # Case and surrounding blanks do not move a tenant.
    assert shard_of(f" {tenant_id.upper()} ", count) == KNOWN[(tenant_id, count)]


def test_one_shard_holds_everything_and_bad_counts_are_refused() -> None:
    assert shard_of(str(uuid.uuid4()), 1) == 0
    for bad in (0, -1, 257):
        with pytest.raises(ValueError, match="shard count"):
            shard_of(str(uuid.uuid4()), bad)


def test_tenants_spread_evenly_over_the_shards() -> None:
    ids = [str(uuid.UUID(int=i * 2654435761 + 17)) for i in range(4000)]
    sizes = Counter(shard_of(i, 8) for i in ids)
    assert sorted(sizes) == list(range(8))
    assert spread([sizes[k] for k in range(8)]) < 1.15


def test_stack_names_keep_the_environment_name_for_one_shard() -> None:
    assert stack_names("staging", 1) == ["staging"]
    assert stack_names("prod", 3) == ["prod-0", "prod-1", "prod-2"]
    assert stack_name("prod", 2, 3) == "prod-2"
    with pytest.raises(ValueError, match="not in"):
        stack_name("prod", 3, 3)


def test_which_stacks_belong_to_an_environment() -> None:
    assert belongs_to("staging", "staging")
    assert belongs_to("staging", "staging-12")
    assert not belongs_to("staging", "staging-01")
    assert not belongs_to("staging", "prod-1")
    assert not belongs_to("staging", "staging-x")
    assert not belongs_to("prod", "production")


@dataclass(frozen=True)
class Row:
    tenant_id: str


def test_partition_keeps_order_and_puts_each_row_in_its_shard() -> None:
    rows = [Row(str(uuid.UUID(int=i + 1))) for i in range(50)]
    parts = partition(rows, 3)
    assert sum(len(p) for p in parts) == 50
    for index, part in enumerate(parts):
        assert all(shard_of(r.tenant_id, 3) == index for r in part)
        assert part == sorted(part, key=rows.index)


def test_the_shard_count_is_validated_in_the_stack_config() -> None:
    assert parse_stack_config({}, environment="prod").shards == 1
    assert parse_stack_config({"shards": "8"}, environment="prod").shards == 8
    for bad in ("0", "257", "two", True):
        with pytest.raises(ConfigError, match="shards"):
            parse_stack_config({"shards": bad}, environment="prod")


def test_a_stack_name_says_its_environment_and_shard() -> None:
    envs = ("staging", "prod")
    assert parse_stack_name("staging", envs) == ("staging", None)
    assert parse_stack_name("prod-12", envs) == ("prod", 12)
    for bad in ("dev", "dev-1", "prod-01", "prod-", "staging-x"):
        with pytest.raises(ValueError, match="not a stack"):
            parse_stack_name(bad, envs)
