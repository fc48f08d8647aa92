"""Cluster mode against a real Kubernetes API server (loopback etcd + kube-apiserver).

The Pulumi Kubernetes provider applies each tenant's Certificate, Gateway and
VirtualService to an API server that holds the real cert-manager and Istio
CRDs; the tests read back what the server stored. Every test uses its own
tenant prefixes, so they share one cluster without seeing each other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

from adapters.kube import ISTIO, KubeClient
from core.config import StackConfig, parse_stack_config
from core.istio_routes import challenge_shadowed_by
from core.manifests import LABEL_MANAGED_BY, LABEL_TENANT_SLUG, resource_name
from core.records import DomainRecord
from core.status import DomainStatus
from core.sync import ROUTING_KINDS, Synced, parse_synced, routing_not_accepted
from loopback.cluster import ClusterInfo, api_request, running_cluster
from reconciler.environment_reconcile import detect_drift, reconcile_once
from stack.automation import EnvironmentStack
from stack.toolchain import REPO_ROOT, pulumi_environment

pytestmark = [pytest.mark.kubernetes, pytest.mark.pulumi]

KINDS = {
    "Certificate": "/apis/cert-manager.io/v1/namespaces/istio-system/certificates",
    "Gateway": f"{ISTIO}/namespaces/istio-system/gateways",
    "VirtualService": f"{ISTIO}/namespaces/msp/virtualservices",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as info:
        for namespace in ("istio-system", "msp"):
            created = api_request(
                info,
                "POST",
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
            assert created.ok, created.text
        yield info


def cluster_config(info: ClusterInfo, environment: str = "staging") -> StackConfig:
    # The ClusterIssuer is cluster-scoped: one name per test keeps the stacks apart.
    issuer = f"test-issuer-{uuid.uuid4().hex[:8]}"
    base = parse_stack_config(
        {"issuerName": issuer, "allowedIssuers": issuer}, environment=environment
    )
    return dataclasses.replace(base, mode="cluster", kubeconfig=str(info.kubeconfig))


def make_stack(work_dir: Path, config: StackConfig) -> EnvironmentStack:
    penv = pulumi_environment(work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
    return EnvironmentStack(penv, config, work_dir=work_dir)


def tenants(count: int) -> list[DomainRecord]:
    run = uuid.uuid4().hex[:5]
    return [
        DomainRecord(
            tenant_id=str(uuid.uuid4()),
            prefix=f"{run}{i:02x}",
            domain=f"portal{i}-{run}.acme-example.com",
            canonical_host=f"{run}{i:02x}.portal.algapsa.com",
            certificate_secret_name=f"portal-domain-{run}{i:02x}-tls",
            status=DomainStatus.ACTIVE,
        )
        for i in range(count)
    ]


def stored(info: ClusterInfo, kind: str, prefix: str) -> dict[str, Any] | None:
    obj: dict[str, Any] | None = KubeClient.from_kubeconfig(info.kubeconfig).get(
        f"{KINDS[kind]}/{resource_name(prefix)}"
    )
    return obj


def test_three_tenants_become_nine_objects_in_the_api_server(
    cluster: ClusterInfo, work_dir: Path
) -> None:
    rows = tenants(3)
    summary = make_stack(work_dir, cluster_config(cluster)).up(rows)
    assert summary.counts["create"] == 9
    for row in rows:
        for kind in KINDS:
            obj = stored(cluster, kind, row.prefix)
            assert obj is not None, (kind, row.prefix)
            labels = obj["metadata"]["labels"]
            assert labels[LABEL_TENANT_SLUG] == row.prefix
            assert labels[LABEL_MANAGED_BY] == "portal-domains"
    vs = stored(cluster, "VirtualService", rows[0].prefix)
    assert vs is not None
    assert vs["spec"]["hosts"] == [rows[0].domain]
    assert vs["spec"]["gateways"] == [f"istio-system/{resource_name(rows[0].prefix)}"]


def test_a_disabled_tenant_leaves_the_cluster_and_the_others_are_untouched(
    cluster: ClusterInfo, work_dir: Path
) -> None:
    rows = tenants(3)
    stack = make_stack(work_dir, cluster_config(cluster))
    stack.up(rows)
    before = {
        (kind, row.prefix): stored(cluster, kind, row.prefix)["metadata"]["resourceVersion"]  # type: ignore[index]
        for row in rows[1:]
        for kind in KINDS
    }
    gone = dataclasses.replace(rows[0], status=DomainStatus.DISABLED)
    summary = stack.up([gone, *rows[1:]])
    assert summary.counts["delete"] == 3
    for kind in KINDS:
        assert stored(cluster, kind, rows[0].prefix) is None, kind
    after = {
        (kind, row.prefix): stored(cluster, kind, row.prefix)["metadata"]["resourceVersion"]  # type: ignore[index]
        for row in rows[1:]
        for kind in KINDS
    }
    assert after == before


def test_a_changed_hostname_replaces_the_objects(cluster: ClusterInfo, work_dir: Path) -> None:
    [row] = tenants(1)
    stack = make_stack(work_dir, cluster_config(cluster))
    stack.up([row])
    old = stored(cluster, "Certificate", row.prefix)
    assert old is not None
    moved = dataclasses.replace(row, domain=f"new-{row.domain}")
    summary = stack.up([moved])
    assert summary.counts["replace"] == 3
    new = stored(cluster, "Certificate", row.prefix)
    assert new is not None
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["spec"]["dnsNames"] == [moved.domain]
    vs = stored(cluster, "VirtualService", row.prefix)
    assert vs is not None
    assert vs["spec"]["hosts"] == [moved.domain]


def test_a_hand_edit_is_found_as_drift_and_undone_by_the_next_reconcile(
    cluster: ClusterInfo, work_dir: Path
) -> None:
    [row] = tenants(1)
    stack = make_stack(work_dir, cluster_config(cluster))
    kube = KubeClient.from_kubeconfig(cluster.kubeconfig)
    stack.up([row])
    assert detect_drift(stack, kube, [row]) == []
    want = stored(cluster, "VirtualService", row.prefix)
    assert want is not None
    edited = api_request(
        cluster,
        "PATCH",
        f"{KINDS['VirtualService']}/{resource_name(row.prefix)}?fieldManager=kubectl-edit",
        {"spec": {"hosts": [row.domain, "evil.example.net"]}},
        content_type="application/merge-patch+json",
    )
    assert edited.ok, edited.text

    [drift] = detect_drift(stack, kube, [row])
    assert (drift.kind, drift.fields) == ("VirtualService", ("spec.hosts",))

    report = reconcile_once(
        stack=stack, load_records=lambda: [row], git=None, tracer=trace.get_tracer("test")
    )
    assert [d.line() for d in report.drift] == [drift.line()]
    restored = stored(cluster, "VirtualService", row.prefix)
    assert restored is not None
    assert restored["spec"]["hosts"] == want["spec"]["hosts"]
    assert detect_drift(stack, kube, [row]) == []


def test_an_object_deleted_by_hand_comes_back_with_the_next_up(
    cluster: ClusterInfo, work_dir: Path
) -> None:
    [row] = tenants(1)
    stack = make_stack(work_dir, cluster_config(cluster))
    stack.up([row])
    deleted = api_request(cluster, "DELETE", f"{KINDS['Gateway']}/{resource_name(row.prefix)}")
    assert deleted.ok, deleted.text
    assert stored(cluster, "Gateway", row.prefix) is None

    [drift] = detect_drift(stack, KubeClient.from_kubeconfig(cluster.kubeconfig), [row])
    assert (drift.kind, drift.fields) == ("Gateway", ())
    summary = stack.up([row])
    assert summary.counts["create"] == 1
    assert stored(cluster, "Gateway", row.prefix) is not None


CRASHING_UP = """
import dataclasses, json, sys
from pathlib import Path
from core.config import parse_stack_config
from core.records import DomainRecord
from core.status import DomainStatus
from stack.automation import EnvironmentStack
from stack.toolchain import pulumi_environment

work, kubeconfig, issuer = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = json.loads(sys.argv[4])
config = dataclasses.replace(
    parse_stack_config({"issuerName": issuer, "allowedIssuers": issuer}, environment="staging"),
    mode="cluster",
    kubeconfig=kubeconfig,
)
penv = pulumi_environment(work_dir=work, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
records = [DomainRecord(**{**r, "status": DomainStatus.ACTIVE}) for r in rows]
EnvironmentStack(penv, config, work_dir=work).up(records)
"""


def test_an_up_killed_with_pending_operations_is_recovered_and_converges(
    cluster: ClusterInfo, work_dir: Path
) -> None:
    rows = tenants(8)
    config = cluster_config(cluster)
    payload = json.dumps(
        [{k: v for k, v in dataclasses.asdict(r).items() if k != "status"} for r in rows]
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CRASHING_UP,
            str(work_dir),
            str(cluster.kubeconfig),
            config.issuer_name,
            payload,
        ],
        cwd=REPO_ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = (
        work_dir / "pulumi-state" / ".pulumi" / "stacks" / "portal-domains" / "staging.json"
    )
    deadline = time.monotonic() + 240
    try:
        while True:  # kill the whole process group the moment a step is in flight
            assert proc.poll() is None, "the up finished before it could be killed"
            assert time.monotonic() < deadline, "never saw a pending operation"
            try:
                latest = json.loads(checkpoint.read_text())["checkpoint"]["latest"] or {}
            except (OSError, ValueError, KeyError, TypeError):
                latest = {}
            if latest.get("pending_operations"):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    stack = make_stack(work_dir, config)
    steps = stack.recover()
    assert any("pending operation" in step for step in steps), steps
    assert any("lock" in step for step in steps), steps
    stack.up(rows)
    for row in rows:
        for kind in KINDS:
            assert stored(cluster, kind, row.prefix) is not None, (kind, row.prefix)
    assert stack.recover() == ["refreshed from the cluster"]


def test_each_apply_records_what_the_cluster_stored_and_the_routing_check_reads_it(
    cluster: ClusterInfo, work_dir: Path
) -> None:
    [row] = tenants(1)
    stack = make_stack(work_dir, cluster_config(cluster))
    recorded: dict[str, str] = {}
    reconcile_once(
        stack=stack,
        load_records=lambda: [row],
        git=None,
        tracer=trace.get_tracer("test"),
        record_synced=recorded.update,
    )
    synced = parse_synced(recorded[row.prefix])
    assert set(synced) == set(KINDS)
    for kind in KINDS:
        obj = stored(cluster, kind, row.prefix)
        assert obj is not None
        assert synced[kind].resource_version == obj["metadata"]["resourceVersion"]

    def live() -> dict[str, Synced | None]:
        found: dict[str, Synced | None] = {}
        for kind in ROUTING_KINDS:
            obj = stored(cluster, kind, row.prefix)
            found[kind] = (
                None
                if obj is None
                else Synced(
                    resource_version=obj["metadata"]["resourceVersion"],
                    generation=obj["metadata"]["generation"],
                )
            )
        return found

    assert routing_not_accepted(synced, live()) is None
    gone = api_request(cluster, "DELETE", f"{KINDS['VirtualService']}/{resource_name(row.prefix)}")
    assert gone.ok, gone.text
    assert routing_not_accepted(synced, live()) == "the VirtualService is missing from the cluster"


def _solver_ingress(host: str, token: str) -> dict[str, Any]:
    """The Ingress cert-manager's HTTP-01 solver creates (pkg/issuer/acme/http/ingress.go)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "generateName": "cm-acme-http-solver-",
            "namespace": "istio-system",
            "labels": {"acme.cert-manager.io/http01-solver": "true"},
            "annotations": {"kubernetes.io/ingress.class": "istio"},
        },
        "spec": {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": f"/.well-known/acme-challenge/{token}",
                                "pathType": "Exact",
                                "backend": {
                                    "service": {
                                        "name": "cm-acme-http-solver-x7k2p",
                                        "port": {"number": 8089},
                                    }
                                },
                            }
                        ]
                    },
                }
            ]
        },
    }


def test_the_challenge_solvers_route_is_not_shadowed_by_what_the_server_stored(
    cluster: ClusterInfo, work_dir: Path
) -> None:
    [row] = tenants(1)
    config = cluster_config(cluster)
    make_stack(work_dir, config).up([row])
    token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
    created = api_request(
        cluster,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/istio-system/ingresses",
        _solver_ingress(row.domain, token),
    )
    assert created.ok, created.text
    ingress = created.body
    assert (
        ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"]
        == config.acme_ingress_class
    )
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["pathType"] == "Exact"

    gateway = stored(cluster, "Gateway", row.prefix)
    vs = stored(cluster, "VirtualService", row.prefix)
    assert gateway is not None
    assert vs is not None
    assert challenge_shadowed_by([gateway], [vs], row.domain, path["path"]) == []

    # The seed's design, stored by the same server, is caught: a prefix route to a
    # fixed solver service ahead of the catch-all.
    seed_route = {
        "name": "acme-http01-challenge",
        "match": [{"uri": {"prefix": "/.well-known/acme-challenge/"}}],
        "route": [{"destination": {"host": "cm-acme-http-solver.istio-system.svc.cluster.local"}}],
    }
    patched = api_request(
        cluster,
        "PATCH",
        f"{KINDS['VirtualService']}/{resource_name(row.prefix)}",
        {"spec": {"http": [seed_route, *vs["spec"]["http"]]}},
        content_type="application/merge-patch+json",
    )
    assert patched.ok, patched.text
    assert patched.body is not None
    assert challenge_shadowed_by([gateway], [patched.body], row.domain, path["path"]) != []
