"""What a publish does with nm-kube-config files portal-domains did not write."""

from __future__ import annotations

from typing import Any

import pytest

from core.adoption import (
    Action,
    AdoptionPlan,
    DesiredFile,
    FoundFile,
    plan_adoption,
    served_hosts,
)

DIRECTORY = "alga-psa/portal-domains"
OURS = (
    DesiredFile(name="a1b2c3d.yaml", hosts=frozenset({"portal.acme.com"})),
    DesiredFile(name="e4f5a6b.yaml", hosts=frozenset({"clients.globex.io"})),
    DesiredFile(name="cluster-issuer.yaml"),
)


def foreign(name: str, *hosts: str) -> FoundFile:
    return FoundFile(name=name, ours=False, hosts=frozenset(hosts))


def plan(*found: FoundFile) -> AdoptionPlan:
    return plan_adoption(OURS, found, directory=DIRECTORY)


def test_a_foreign_file_with_a_tenant_files_name_is_adopted_in_place() -> None:
    [step] = plan(foreign("a1b2c3d.yaml", "portal.acme.com")).steps

    assert step.action is Action.ADOPT
    assert step.path == f"{DIRECTORY}/a1b2c3d.yaml"
    assert step.taken_over_by == ("a1b2c3d.yaml",)
    assert step.line() == (f"adopted {DIRECTORY}/a1b2c3d.yaml (was not written by portal-domains)")
    assert step.line(planned=True).startswith(f"would adopt {DIRECTORY}/a1b2c3d.yaml")


def test_the_name_alone_decides_adoption_even_when_the_file_is_not_yaml() -> None:
    broken = FoundFile(name="e4f5a6b.yaml", ours=False, hosts=None, error="mapping values here")

    [step] = plan(broken).steps

    assert step.action is Action.ADOPT
    assert "not valid YAML: mapping values here" in step.reason


def test_a_foreign_file_serving_only_our_hosts_under_another_name_is_removed() -> None:
    [step] = plan(foreign("acme-portal.yaml", "portal.acme.com")).steps

    assert step.action is Action.REMOVE
    assert step.shared_hosts == ("portal.acme.com",)
    assert step.taken_over_by == ("a1b2c3d.yaml",)
    assert step.line() == (
        f"removed {DIRECTORY}/acme-portal.yaml (was not written by portal-domains; "
        "a1b2c3d.yaml serves portal.acme.com)"
    )


def test_a_foreign_file_serving_two_of_our_tenants_names_both() -> None:
    [step] = plan(foreign("old.yaml", "portal.acme.com", "clients.globex.io")).steps

    assert step.action is Action.REMOVE
    assert step.taken_over_by == ("a1b2c3d.yaml", "e4f5a6b.yaml")


def test_a_foreign_file_that_also_serves_hosts_we_do_not_manage_is_a_conflict_left_in_place() -> (
    None
):
    [step] = plan(foreign("shared.yaml", "portal.acme.com", "intranet.acme.com")).steps

    assert step.action is Action.CONFLICT
    assert not step.changes_git
    assert "intranet.acme.com" in step.reason
    assert step.line().startswith(f"conflict, left in place: {DIRECTORY}/shared.yaml")


def test_a_foreign_file_unrelated_to_our_tenants_is_left_alone_and_reported_once() -> None:
    result = plan(foreign("kustomization.yaml"), foreign("other-team.yaml", "wiki.acme.com"))

    assert [(s.action, s.path) for s in result.steps] == [
        (Action.LEAVE, f"{DIRECTORY}/kustomization.yaml"),
        (Action.LEAVE, f"{DIRECTORY}/other-team.yaml"),
    ]
    assert result.steps[0].line() == (
        f"foreign, left alone: {DIRECTORY}/kustomization.yaml (serves none of our hosts)"
    )
    assert result.replaced_paths == ()


def test_a_file_that_is_not_yaml_is_reported_and_never_deleted() -> None:
    broken = FoundFile(name="notes.yaml", ours=False, hosts=None, error="found character '\\t'")

    [step] = plan(broken).steps

    assert step.action is Action.UNREADABLE
    assert not step.changes_git
    assert step.line() == (
        f"not valid YAML, left alone: {DIRECTORY}/notes.yaml (found character '\\t')"
    )


def test_our_own_files_are_not_part_of_the_plan() -> None:
    result = plan(
        FoundFile(name="a1b2c3d.yaml", ours=True),
        FoundFile(name="gone1234.yaml", ours=True),
    )

    assert result.steps == ()


def test_replaced_paths_are_the_adopted_and_removed_files_in_name_order() -> None:
    result = plan(
        foreign("z-old.yaml", "clients.globex.io"),
        foreign("kustomization.yaml"),
        foreign("a1b2c3d.yaml"),
    )

    assert result.replaced_paths == (f"{DIRECTORY}/a1b2c3d.yaml", f"{DIRECTORY}/z-old.yaml")
    assert result.counts() == {
        "adopt": 1,
        "remove": 1,
        "conflict": 0,
        "leave": 1,
        "unreadable": 0,
    }


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        (
            [{"kind": "Certificate", "spec": {"dnsNames": ["Portal.Acme.com."]}}],
            {"portal.acme.com"},
        ),
        (
            [{"kind": "Certificate", "spec": {"commonName": "a.example.com", "dnsNames": []}}],
            {"a.example.com"},
        ),
        (
            [
                {
                    "kind": "Gateway",
                    "spec": {
                        "servers": [
                            {"hosts": ["istio-system/portal.acme.com"]},
                            {"hosts": ["*", "*.acme.com", "b.example.com"]},
                        ]
                    },
                }
            ],
            {"portal.acme.com", "b.example.com"},
        ),
        ([{"kind": "VirtualService", "spec": {"hosts": ["portal.acme.com"]}}], {"portal.acme.com"}),
        (
            [
                {
                    "kind": "Ingress",
                    "spec": {"rules": [{"host": "x.example.com"}], "tls": [{"hosts": ["y.io"]}]},
                }
            ],
            {"x.example.com", "y.io"},
        ),
        ([{"kind": "HTTPRoute", "spec": {"hostnames": ["r.example.com"]}}], {"r.example.com"}),
        ([{"kind": "ConfigMap", "data": {"hosts": "portal.acme.com"}}], set()),
        ([None, "text", {"kind": "VirtualService", "spec": None}], set()),
    ],
)
def test_served_hosts_reads_every_kind_that_serves_a_host(
    documents: list[Any], expected: set[str]
) -> None:
    assert served_hosts(documents) == frozenset(expected)
