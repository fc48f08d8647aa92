"""The stack end to end with the real engine: up, prune, replace, guards, recovery, export.

Each test drives its own stack through stack.automation.EnvironmentStack with a
file backend in a temporary folder, so the tests are independent.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from adapters.manifest_files import HEADER_PREFIX, sync_directory
from core.config import StackConfig, parse_stack_config
from core.records import DomainRecord
from core.status import DomainStatus
from stack.automation import (
    EnvironmentStack,
    PolicyViolationsError,
    RefusedRun,
    StackOperationError,
)
from stack.config import load_stack_config
from stack.export import HEADER, render_files
from stack.toolchain import pulumi_environment

pytestmark = pytest.mark.pulumi

TENANTS = [
    ("1111111", "11111111-aaaa-4aaa-8aaa-000000000001", "portal.acme.com"),
    ("2222222", "22222222-bbbb-4bbb-8bbb-000000000002", "clients.globex.io"),
    ("3333333", "33333333-cccc-4ccc-8ccc-000000000003", "help.initech.co.uk"),
]


def records(status: DomainStatus = DomainStatus.ACTIVE) -> list[DomainRecord]:
    return [
        DomainRecord(
            tenant_id=tid,
            prefix=slug,
            domain=domain,
            canonical_host=f"{slug}.portal.algapsa.com",
            certificate_secret_name=f"portal-domain-{slug}-tls",
            status=status,
        )
        for slug, tid, domain in TENANTS
    ]


def make_stack(work_dir: Path, config: StackConfig | None = None) -> EnvironmentStack:
    penv = pulumi_environment(work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
    return EnvironmentStack(
        penv, config or parse_stack_config({}, environment="staging"), work_dir=work_dir
    )


def export(stack: EnvironmentStack, out: Path) -> dict[str, str]:
    files = render_files(stack.state_objects(), environment="staging")
    sync_directory(files, out)
    return {p.name: p.read_text() for p in sorted(out.glob("*.yaml"))}


def test_three_tenants_become_nine_resources_and_three_yaml_files(work_dir: Path) -> None:
    stack = make_stack(work_dir)
    lines: list[str] = []
    summary = stack.up(records(), progress=lines.append)
    assert summary.counts["create"] == 9
    assert {t.slug for t in summary.tenants} == {"1111111", "2222222", "3333333"}
    assert any("Certificate" in line and "1111111" in line for line in lines)
    assert len(stack.state_objects()) == 10  # and the environment's ClusterIssuer
    files = export(stack, work_dir / "out")
    assert sorted(files) == ["1111111.yaml", "2222222.yaml", "3333333.yaml", "cluster-issuer.yaml"]
    text = files["1111111.yaml"]
    assert text.count("\n---\n") == 2
    assert "credentialName: portal-domain-1111111-tls" in text
    assert "status" not in text.split("\n", 1)[1].split(":")[0]

    again = stack.up(records())
    assert not again.has_changes
    assert export(stack, work_dir / "out") == files


def test_a_disabled_tenant_is_pruned_and_other_files_stay_byte_identical(work_dir: Path) -> None:
    stack = make_stack(work_dir)
    stack.up(records())
    before = export(stack, work_dir / "out")
    changed = [
        dataclasses.replace(r, status=DomainStatus.DISABLED) if r.prefix == "2222222" else r
        for r in records()
    ]

    preview = stack.preview(changed)
    assert preview.counts == {"create": 0, "update": 0, "replace": 0, "delete": 3}
    assert [(t.slug, t.kind) for t in preview.tenants] == [("2222222", "delete")]

    stack.up(changed)
    after = export(stack, work_dir / "out")
    assert sorted(after) == ["1111111.yaml", "3333333.yaml", "cluster-issuer.yaml"]
    assert after["1111111.yaml"] == before["1111111.yaml"]
    assert after["3333333.yaml"] == before["3333333.yaml"]


def test_a_changed_hostname_replaces_the_tenants_resources(work_dir: Path) -> None:
    stack = make_stack(work_dir)
    stack.up(records())
    moved = [
        dataclasses.replace(r, domain="portal.acme-corp.com") if r.prefix == "1111111" else r
        for r in records()
    ]
    summary = stack.up(moved)
    assert summary.counts["replace"] == 3
    assert [t.slug for t in summary.tenants] == ["1111111"]
    files = export(stack, work_dir / "out")
    assert "portal.acme-corp.com" in files["1111111.yaml"]
    assert "portal.acme.com" not in files["1111111.yaml"]


def test_an_empty_desired_state_is_refused_and_changes_nothing(work_dir: Path) -> None:
    stack = make_stack(work_dir)
    stack.up(records())
    with pytest.raises(RefusedRun) as refused:
        stack.up([])
    assert refused.value.code == "empty_desired_state"
    assert stack.stack_tenants() == ["1111111", "2222222", "3333333"]
    summary = stack.up([], allow_empty=True)
    assert summary.counts["delete"] == 9
    assert stack.stack_tenants() == []


def test_removing_the_last_tenants_is_allowed_when_their_rows_say_why(work_dir: Path) -> None:
    stack = make_stack(work_dir)
    stack.up(records()[:2])
    disabled = records(DomainStatus.DISABLED)[:2]
    summary = stack.up(disabled)
    assert summary.counts["delete"] == 6
    assert stack.stack_tenants() == []


def test_deleting_more_tenants_than_the_cap_needs_confirmation(work_dir: Path) -> None:
    config = parse_stack_config({"deletionCap": "1"}, environment="staging")
    stack = make_stack(work_dir, config)
    stack.up(records())
    keep_one = records()[:1]
    with pytest.raises(RefusedRun) as refused:
        stack.up(keep_one)
    assert refused.value.code == "deletion_cap"
    assert "2222222" in str(refused.value)
    assert len(stack.state_objects()) == 10  # and the ClusterIssuer
    summary = stack.up(keep_one, confirm_deletions=True)
    assert summary.counts["delete"] == 6


def test_a_stale_lock_and_pending_operations_from_a_crashed_run_are_recovered(
    work_dir: Path,
) -> None:
    stack = make_stack(work_dir)
    stack.up(records()[:1])
    # What a worker killed mid-update leaves: a lock file and a pending create.
    backend = Path(stack.penv.backend_url.removeprefix("file://"))
    lock_dir = backend / ".pulumi" / "locks" / "organization" / "portal-domains" / "staging"
    lock_dir.mkdir(parents=True, exist_ok=True)
    (lock_dir / "crashed-run.json").write_text(
        json.dumps({"pid": 999999, "username": "ghost", "hostname": "gone"})
    )
    with pytest.raises(StackOperationError, match="locked"):
        stack.up(records())

    # A killed `up` also leaves pending operations in the checkpoint (written
    # directly: `pulumi stack import` would drop them).
    checkpoint_file = backend / ".pulumi" / "stacks" / "portal-domains" / "staging.json"
    checkpoint = json.loads(checkpoint_file.read_text())
    checkpoint["checkpoint"]["latest"]["pending_operations"] = [
        {
            "resource": {
                "urn": "urn:pulumi:staging::portal-domains::kubernetes:cert-manager.io/v1"
                ":Certificate::9999999-certificate",
                "custom": True,
                "type": "kubernetes:cert-manager.io/v1:Certificate",
            },
            "type": "creating",
        }
    ]
    checkpoint_file.write_text(json.dumps(checkpoint))
    assert (stack._open(()).export_stack().deployment or {}).get("pending_operations")

    steps = stack.recover()
    assert any("lock" in s for s in steps)
    assert any("pending" in s for s in steps)
    summary = stack.up(records())
    assert summary.counts["create"] == 6
    assert (stack._open(()).export_stack().deployment or {}).get("pending_operations") in (None, [])


def test_recover_on_a_healthy_stack_reports_nothing(work_dir: Path) -> None:
    stack = make_stack(work_dir)
    stack.up(records()[:1])
    assert stack.recover() == []


def test_exported_files_carry_the_header_that_marks_them_as_ours() -> None:
    assert HEADER.format(env="prod").startswith(HEADER_PREFIX)


# ------------------------------------------------------------ prod guards that never stall

FOURTH = DomainRecord(
    tenant_id="44444444-dddd-4ddd-8ddd-000000000004",
    prefix="4444444",
    domain="portal.umbrella.net",
    canonical_host="4444444.portal.algapsa.com",
    certificate_secret_name="portal-domain-4444444-tls",
    status=DomainStatus.ACTIVE,
)
FIFTH = dataclasses.replace(
    FOURTH,
    tenant_id="55555555-eeee-4eee-8eee-000000000005",
    prefix="5555555",
    domain="portal.hooli.xyz",
    canonical_host="5555555.portal.algapsa.com",
    certificate_secret_name="portal-domain-5555555-tls",
)


def prod() -> StackConfig:
    return load_stack_config("prod")


def test_in_prod_one_of_four_tenants_disabling_its_domain_is_pruned(work_dir: Path) -> None:
    # prod: deletion-budget mandatory at 20 %; one of four is 25 %, but the row says why.
    stack = make_stack(work_dir, prod())
    stack.up([*records(), FOURTH])
    disabled = dataclasses.replace(FOURTH, status=DomainStatus.DISABLED)
    summary = stack.up([*records(), disabled])
    assert summary.counts["delete"] == 3
    assert stack.stack_tenants() == ["1111111", "2222222", "3333333"]
    # ... and the next reconcile is not stuck on it.
    assert not stack.up([*records(), disabled]).has_changes


def test_in_prod_unexplained_removals_are_held_and_a_new_tenant_still_deploys(
    work_dir: Path,
) -> None:
    stack = make_stack(work_dir, prod())
    stack.up([*records(), FOURTH])
    # Two tenants vanish from the input with no row saying why (50 %, over the budget),
    # while a new tenant arrives.
    rows = [*records()[:2], FIFTH]
    with pytest.raises(PolicyViolationsError):
        stack.up(rows)
    summary = stack.up(rows, hold_refused=True)
    assert summary.held_tenants == ["3333333", "4444444"]
    assert summary.held_reason is not None
    assert "deletion-budget" in summary.held_reason
    assert summary.counts == {"create": 3, "update": 0, "replace": 0, "delete": 0}
    assert stack.stack_tenants() == ["1111111", "2222222", "3333333", "4444444", "5555555"]
    # The plan (`portal-domains preview`) says what the worker would hold, and why.
    plan = stack.plan(rows)
    assert plan.held_tenants == ["3333333", "4444444"]
    assert plan.held_reason is not None
    assert "deletion-budget" in plan.held_reason
    assert plan.deleted_tenants == []
    assert plan.counts["delete"] == 0


def test_deletions_over_the_cap_are_held_until_confirmed(work_dir: Path) -> None:
    config = parse_stack_config({"deletionCap": "1"}, environment="staging")
    stack = make_stack(work_dir, config)
    stack.up(records())
    rows = [*records(DomainStatus.DISABLED)[1:], records()[0], FOURTH]
    summary = stack.up(rows, hold_refused=True)
    assert summary.held_tenants == ["2222222", "3333333"]
    assert summary.held_reason is not None
    assert "deletionCap=1" in summary.held_reason
    assert summary.counts["create"] == 3
    assert stack.stack_tenants() == ["1111111", "2222222", "3333333", "4444444"]
    confirmed = stack.up(rows, confirm_deletions=True)
    assert confirmed.counts["delete"] == 6
    assert confirmed.held_tenants == []
    assert stack.stack_tenants() == ["1111111", "4444444"]


def test_a_run_with_only_refused_deletions_holds_them_and_changes_nothing(
    work_dir: Path,
) -> None:
    stack = make_stack(work_dir)
    stack.up(records())
    summary = stack.up([], hold_refused=True)
    assert summary.held_tenants == ["1111111", "2222222", "3333333"]
    assert not summary.has_changes
    assert stack.stack_tenants() == ["1111111", "2222222", "3333333"]
