"""The loopback Kubernetes API server (loopback/cluster.py) against the real binaries.

These tests start real etcd and kube-apiserver processes built by
scripts/setup-kubernetes.sh. They never skip: without the binaries they fail and
say how to build them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loopback.cluster import (
    ApiResponse,
    ClusterError,
    ClusterInfo,
    api_request,
    locate_binaries,
    locate_crds,
    running_cluster,
    start,
    status,
    stop,
)

pytestmark = pytest.mark.kubernetes

log = logging.getLogger(__name__)

CERT_MANAGER_CRDS = {
    "certificaterequests.cert-manager.io",
    "certificates.cert-manager.io",
    "challenges.acme.cert-manager.io",
    "clusterissuers.cert-manager.io",
    "issuers.cert-manager.io",
    "orders.acme.cert-manager.io",
}
ISTIO_CRDS = {
    "authorizationpolicies.security.istio.io",
    "destinationrules.networking.istio.io",
    "envoyfilters.networking.istio.io",
    "gateways.networking.istio.io",
    "peerauthentications.security.istio.io",
    "proxyconfigs.networking.istio.io",
    "requestauthentications.security.istio.io",
    "serviceentries.networking.istio.io",
    "sidecars.networking.istio.io",
    "telemetries.telemetry.istio.io",
    "trafficextensions.extensions.istio.io",
    "virtualservices.networking.istio.io",
    "wasmplugins.extensions.istio.io",
    "workloadentries.networking.istio.io",
    "workloadgroups.networking.istio.io",
}
PLURALS = {
    "Certificate": "certificates",
    "Gateway": "gateways",
    "VirtualService": "virtualservices",
    "Pod": "pods",
}
GATEWAY_NAMESPACE = "istio-system"
APP_NAMESPACE = "msp"


def certificate() -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "portal-domain-abc1234", "namespace": GATEWAY_NAMESPACE},
        "spec": {
            "dnsNames": ["portal.acme.com"],
            "secretName": "portal-domain-abc1234-tls",
            "issuerRef": {
                "group": "cert-manager.io",
                "kind": "ClusterIssuer",
                "name": "letsencrypt-http01",
            },
            "privateKey": {"rotationPolicy": "Always"},
        },
    }


def gateway() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "portal-domain-abc1234", "namespace": GATEWAY_NAMESPACE},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "hosts": ["portal.acme.com"],
                    "port": {"name": "https-abc1234", "number": 443, "protocol": "HTTPS"},
                    "tls": {"mode": "SIMPLE", "credentialName": "portal-domain-abc1234-tls"},
                }
            ],
        },
    }


def virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "portal-domain-abc1234", "namespace": APP_NAMESPACE},
        "spec": {
            "hosts": ["portal.acme.com"],
            "gateways": [f"{GATEWAY_NAMESPACE}/portal-domain-abc1234"],
            "http": [
                {
                    "name": "portal",
                    "route": [
                        {
                            "destination": {
                                "host": "sebastian.msp.svc.cluster.local",
                                "port": {"number": 3000},
                            }
                        }
                    ],
                }
            ],
        },
    }


def collection_path(doc: dict[str, Any]) -> str:
    api_version = doc["apiVersion"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{doc['metadata']['namespace']}/{PLURALS[doc['kind']]}"


def dry_run_create(cluster: ClusterInfo, doc: dict[str, Any]) -> ApiResponse:
    """Create `doc` with server-side dry-run: full validation and admission, nothing stored."""
    path = collection_path(doc) + "?dryRun=All&fieldValidation=Strict"
    return api_request(cluster, "POST", path, doc)


def is_alive(pid: int) -> bool:
    """True while the pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    with running_cluster(tmp_path_factory.mktemp("kube"), progress=log.info) as info:
        for namespace in (GATEWAY_NAMESPACE, APP_NAMESPACE):
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            created = api_request(info, "POST", "/api/v1/namespaces", body)
            assert created.status == 201, created.message
        yield info


def test_binaries_and_crds_are_installed() -> None:
    # Fails (never skips) with the command that fixes it.
    binaries = locate_binaries()
    for path in (binaries.kube_apiserver, binaries.etcd, binaries.kubectl):
        assert os.access(path, os.X_OK), path
    assert len(list(locate_crds().glob("*.yaml"))) == 7  # 6 cert-manager files + Istio's one


def test_missing_binaries_name_the_setup_script(tmp_path: Path) -> None:
    empty = {"PORTAL_DOMAINS_CACHE": str(tmp_path), "PATH": str(tmp_path)}
    with pytest.raises(ClusterError, match=r"setup-kubernetes\.sh"):
        locate_binaries(empty)
    with pytest.raises(ClusterError, match=r"setup-kubernetes\.sh"):
        locate_crds(empty)


def test_readyz(cluster: ClusterInfo) -> None:
    response = api_request(cluster, "GET", "/readyz")
    assert (response.status, response.text) == (200, "ok")
    version = api_request(cluster, "GET", "/version")
    assert version.body["gitVersion"] == "v1.37.2"
    current = status(cluster.state_dir)
    assert current.running, current.detail
    assert current.readyz == "ok"
    assert current.processes == {
        "etcd": True,
        "kube-apiserver": True,
        "kube-controller-manager": True,
    }


def test_every_crd_is_established(cluster: ClusterInfo) -> None:
    response = api_request(
        cluster, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    )
    assert response.ok, response.message
    established = {
        item["metadata"]["name"]
        for item in response.body["items"]
        if any(
            c["type"] == "Established" and c["status"] == "True"
            for c in item["status"]["conditions"]
        )
    }
    assert established == CERT_MANAGER_CRDS | ISTIO_CRDS
    assert len(established) == 21
    assert set(cluster.crds) == established


def test_istio_networking_v1_and_cert_manager_v1_are_served(cluster: ClusterInfo) -> None:
    istio = api_request(cluster, "GET", "/apis/networking.istio.io/v1")
    assert istio.ok, istio.message
    assert {"gateways", "virtualservices"} <= {r["name"] for r in istio.body["resources"]}
    cert_manager = api_request(cluster, "GET", "/apis/cert-manager.io/v1")
    assert cert_manager.ok, cert_manager.message
    assert "certificates" in {r["name"] for r in cert_manager.body["resources"]}


def test_kubeconfig_works_with_kubectl(cluster: ClusterInfo) -> None:
    proc = subprocess.run(
        [
            str(locate_binaries().kubectl),
            f"--kubeconfig={cluster.kubeconfig}",
            f"--cache-dir={cluster.state_dir / 'kubectl-cache'}",
            "get",
            "crd",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 21
    assert oct(cluster.kubeconfig.stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize("make", [certificate, gateway, virtual_service])
def test_sample_is_accepted_by_strict_server_side_dry_run(
    cluster: ClusterInfo, make: Callable[[], dict[str, Any]]
) -> None:
    doc = make()
    response = dry_run_create(cluster, doc)
    assert response.status == 201, response.message
    assert response.body["kind"] == doc["kind"]
    assert response.body["spec"] == doc["spec"]
    # Dry-run stored nothing.
    stored = api_request(cluster, "GET", f"{collection_path(doc)}/{doc['metadata']['name']}")
    assert stored.status == 404, stored.message


def test_unknown_field_is_rejected_with_the_servers_message(cluster: ClusterInfo) -> None:
    doc = certificate()
    # A plausible mistake: a ClusterIssuer reference has no namespace.
    doc["spec"]["issuerRef"]["namespace"] = GATEWAY_NAMESPACE
    response = dry_run_create(cluster, doc)
    assert response.status == 400, response.text
    assert response.body["reason"] == "BadRequest"
    assert 'unknown field "spec.issuerRef.namespace"' in response.message


def test_schema_violation_is_rejected(cluster: ClusterInfo) -> None:
    doc = gateway()
    doc["spec"]["servers"][0]["port"]["number"] = "443"
    response = dry_run_create(cluster, doc)
    assert response.status == 422, response.text
    assert response.body["reason"] == "Invalid"
    assert "spec.servers[0].port.number" in response.message
    assert "must be of type integer" in response.message


def test_an_object_owned_by_a_deleted_one_is_garbage_collected(cluster: ClusterInfo) -> None:
    # What removes a tenant's TLS Secret with its Certificate (cert-manager's
    # --enable-certificate-owner-ref): the owner here is a ConfigMap, the same mechanism.
    base = f"/api/v1/namespaces/{APP_NAMESPACE}"
    owner = api_request(
        cluster,
        "POST",
        f"{base}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gc-owner"}},
    )
    assert owner.ok, owner.message
    owned = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "gc-owned",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "gc-owner",
                    "uid": owner.body["metadata"]["uid"],
                }
            ],
        },
        "stringData": {"k": "v"},
    }
    assert api_request(cluster, "POST", f"{base}/secrets", owned).ok
    assert api_request(cluster, "DELETE", f"{base}/configmaps/gc-owner").ok
    deadline = time.monotonic() + 30
    while api_request(cluster, "GET", f"{base}/secrets/gc-owned").status != 404:
        assert time.monotonic() < deadline, "the owned Secret outlived its owner by 30 s"
        time.sleep(0.2)


def test_pods_are_admitted_without_a_serviceaccount_controller(cluster: ClusterInfo) -> None:
    # kube-controller-manager runs no serviceaccount controller here, so nothing creates
    # the `default` ServiceAccount; the ServiceAccount admission plugin would reject
    # this Pod (cert-manager's HTTP-01 solver is one).
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "solver", "namespace": APP_NAMESPACE},
        "spec": {"containers": [{"name": "solver", "image": "registry.invalid/solver:1"}]},
    }
    response = dry_run_create(cluster, pod)
    assert response.status == 201, response.message


def test_lifecycle_start_status_stop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state_dir = tmp_path / "cluster"
    assert status(state_dir).state == "stopped"
    assert stop(state_dir) is False

    messages: list[str] = []
    with caplog.at_level(logging.DEBUG):
        info = start(state_dir, progress=messages.append)
        try:
            with pytest.raises(ClusterError, match="still running"):
                start(state_dir)
            running = status(state_dir)
            assert running.running, running.detail
            assert running.readyz == "ok"
            assert all(is_alive(pid) for pid in info.pids.values())
        finally:
            assert stop(state_dir) is True

    assert set(info.pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert not any(is_alive(pid) for pid in info.pids.values())
    assert status(state_dir).state == "stopped"
    assert stop(state_dir) is False
    # The admin token never reaches logs, progress messages or repr().
    assert info.token not in caplog.text
    assert not any(info.token in message for message in messages)
    assert info.token not in repr(info)
    assert any("cluster ready" in message for message in messages)


def test_stop_leaves_a_foreign_process_alone(tmp_path: Path) -> None:
    # A recorded pid that now belongs to another program (pid reuse, or a restart)
    # must survive stop(): it was not started by start().
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        stat = Path(f"/proc/{sleeper.pid}/stat").read_text()
        start_ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        exe = os.readlink(f"/proc/{sleeper.pid}/exe")
        records = {
            # Same pid, different executable.
            "etcd": {"pid": sleeper.pid, "executable": "/nonexistent/etcd", "start_ticks": 1},
            # Same pid and executable, but started at another time.
            "kube-apiserver": {
                "pid": sleeper.pid,
                "executable": exe,
                "start_ticks": start_ticks + 1,
            },
        }
        (tmp_path / "cluster.json").write_text(json.dumps({"processes": records}))
        assert status(tmp_path).state == "stopped"
        assert stop(tmp_path) is False
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
