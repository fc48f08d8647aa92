"""Adoption end to end: nm-kube-config files and live objects we did not create.

A reconcile in gitops mode adopts a headerless file with a tenant file's name
and removes a foreign duplicate of a tenant's host in the same commit, and the
reconcile report names both.

Cluster mode adopts a tenant's objects that already exist in the API server. A
tenant served before portal-domains managed it (by hand, by the TypeScript
implementation) already has its Certificate, Gateway and VirtualService under
the names we use. The first `up` must take those objects over, not delete and
re-create them (a new Certificate object would throw away cert-manager's
issued certificate and order a new one from Let's Encrypt), and not fail with
"already exists". The provider's server-side apply upserts: these tests prove
it against the real loopback API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import git
import pytest
from opentelemetry import trace

from adapters.gitops import GitOpsRepo, GitSettings, ensure_bare_remote
from adapters.kube import KubeClient
from core.config import parse_stack_config
from core.manifests import render_domain, resource_name
from loopback.cluster import ClusterInfo, api_request
from reconciler.environment_reconcile import reconcile_once
from tests.e2e.test_cluster_mode import (
    KINDS,
    cluster,  # noqa: F401 (the module-scoped API server fixture)
    cluster_config,
    make_stack,
    stored,
    tenants,
)

pytestmark = pytest.mark.pulumi


def test_a_reconcile_adopts_foreign_files_and_its_report_names_them(
    work_dir: Path, tmp_path: Path
) -> None:
    [row, other] = tenants(2)
    config = parse_stack_config({}, environment="staging")
    folder = config.manifest_root
    remote = ensure_bare_remote(tmp_path / "nm-kube-config.git")
    clone = git.Repo.clone_from(remote, tmp_path / "by-hand")
    by_hand = {
        f"{row.prefix}.yaml": "kind: Certificate\nmetadata:\n  name: written-by-hand\n",
        "legacy.yaml": (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
            f"  name: legacy\nspec:\n  hosts:\n  - {other.domain}\n"
        ),
        "kustomization.yaml": "resources: []\n",
    }
    for name, content in by_hand.items():
        (tmp_path / "by-hand" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "by-hand" / folder / name).write_text(content)
    clone.git.add("--all")
    clone.git.commit("-m", "files written by hand", author="someone <someone@example.com>")
    clone.git.push("origin", "HEAD:main")
    publisher = GitOpsRepo(
        GitSettings(remote_url=remote, worktree=tmp_path / "work" / "nm-kube-config")
    )

    report = reconcile_once(
        stack=make_stack(work_dir, config),
        load_records=lambda: [row, other],
        git=publisher,
        tracer=trace.get_tracer("test"),
    )

    assert sorted(report.adoption) == sorted(
        [
            f"foreign, left alone: {folder}/kustomization.yaml (serves none of our hosts)",
            f"removed {folder}/legacy.yaml (was not written by portal-domains; "
            f"{other.prefix}.yaml serves {other.domain})",
            f"adopted {folder}/{row.prefix}.yaml (was not written by portal-domains)",
        ]
    )
    tree = git.Repo(remote).commit("main").tree / folder
    assert sorted(blob.name for blob in tree.blobs) == sorted(
        ["cluster-issuer.yaml", "kustomization.yaml", f"{row.prefix}.yaml", f"{other.prefix}.yaml"]
    )
    assert report.files[row.prefix] == (tree / f"{row.prefix}.yaml").data_stream.read().decode()
    message = git.Repo(remote).commit("main").message
    assert f"adopted {folder}/{row.prefix}.yaml (was not written by portal-domains)" in message


def create_by_hand(info: ClusterInfo, manifest: dict[str, Any]) -> dict[str, Any]:
    """POST the object as another client would (its own field manager, no Pulumi)."""
    created = api_request(
        info, "POST", f"{KINDS[manifest['kind']]}?fieldManager=kubectl-create", manifest
    )
    assert created.ok, created.text
    body: dict[str, Any] = created.body
    return body


@pytest.mark.kubernetes
def test_objects_that_exist_before_the_first_up_are_adopted_not_recreated(
    cluster: ClusterInfo,  # noqa: F811
    work_dir: Path,
) -> None:
    [row] = tenants(1)
    config = cluster_config(cluster)
    manifests = render_domain(row, config)
    # As someone else wrote it: no labels of ours, and a VirtualService that
    # still answers for a host the database no longer gives this tenant.
    existing = {}
    for manifest in manifests.documents():
        handmade = {
            **manifest,
            "metadata": {
                "name": manifest["metadata"]["name"],
                "namespace": manifest["metadata"]["namespace"],
            },
        }
        if manifest["kind"] == "VirtualService":
            handmade["spec"] = {**manifest["spec"], "hosts": ["old-portal.acme-example.com"]}
        existing[manifest["kind"]] = create_by_hand(cluster, handmade)
    stack = make_stack(work_dir, config)

    summary = stack.up([row])

    assert summary.counts["create"] == 3  # new to the stack: created there, upserted live
    in_state = {
        item["outputs"]["kind"]: item["outputs"]
        for item in stack.state_objects()
        if item["slug"] == row.prefix
    }
    for kind, before in existing.items():
        live = stored(cluster, kind, row.prefix)
        assert live is not None, kind
        uid = before["metadata"]["uid"]
        assert live["metadata"]["uid"] == uid, f"{kind} was re-created"
        assert in_state[kind]["metadata"]["uid"] == uid, f"{kind} is not in the stack state"
        assert live["metadata"]["labels"] == manifests.certificate["metadata"]["labels"]
    vs = stored(cluster, "VirtualService", row.prefix)
    assert vs is not None
    assert vs["spec"]["hosts"] == [row.domain]


@pytest.mark.kubernetes
def test_an_adopted_tenant_is_pruned_like_any_other_once_it_leaves(
    cluster: ClusterInfo,  # noqa: F811
    work_dir: Path,
) -> None:
    [row, other] = tenants(2)
    config = cluster_config(cluster)
    gateway = render_domain(row, config).gateway
    create_by_hand(cluster, gateway)
    stack = make_stack(work_dir, config)
    stack.up([row, other])

    summary = stack.up([other])

    assert summary.counts["delete"] == 3
    assert stored(cluster, "Gateway", row.prefix) is None
    kube = KubeClient.from_kubeconfig(cluster.kubeconfig)
    assert kube.get(f"{KINDS['Gateway']}/{resource_name(other.prefix)}") is not None
