"""adapters.kube against a real API server: what cert-manager says about a Certificate.

There are no cert-manager controllers here (issue 12), so the tests write the
status cert-manager would write, through the status subresource, and check
that the client reads back readiness and the most specific reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.kube import CERT_MANAGER, KubeClient, KubeError
from loopback.cluster import ClusterInfo, api_request, running_cluster

pytestmark = pytest.mark.kubernetes
NAMESPACE = "istio-system"
HOST = "portal.acme-example.com"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as info:
        created = api_request(
            info,
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        assert created.ok, created.text
        yield info


def _create_certificate(info: ClusterInfo, name: str) -> None:
    created = api_request(
        info,
        "POST",
        f"{CERT_MANAGER}/namespaces/{NAMESPACE}/certificates",
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "secretName": f"{name}-tls",
                "dnsNames": [HOST],
                "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
            },
        },
    )
    assert created.ok, created.text


def _set_ready(info: ClusterInfo, name: str, status: str, reason: str, message: str) -> None:
    body: dict[str, Any] = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": "2026-12-01T10:00:00Z",
                }
            ],
            "notAfter": "2027-03-01T10:00:00Z" if status == "True" else None,
        }
    }
    patched = api_request(
        info,
        "PATCH",
        f"{CERT_MANAGER}/namespaces/{NAMESPACE}/certificates/{name}/status",
        body,
        content_type="application/merge-patch+json",
    )
    assert patched.ok, patched.text


def test_a_ready_certificate_is_ready_with_its_expiry(cluster: ClusterInfo) -> None:
    _create_certificate(cluster, "cert-ready")
    _set_ready(
        cluster, "cert-ready", "True", "Ready", "Certificate is up to date and has not expired"
    )
    state = KubeClient.from_kubeconfig(cluster.kubeconfig).certificate_state(
        NAMESPACE, "cert-ready", HOST
    )
    assert state.ready
    assert state.not_after == "2027-03-01T10:00:00Z"


def test_a_failing_certificate_carries_cert_managers_reason(cluster: ClusterInfo) -> None:
    _create_certificate(cluster, "cert-failing")
    _set_ready(
        cluster,
        "cert-failing",
        "False",
        "Failed",
        "The certificate request has failed to complete and will be retried: rate limited",
    )
    state = KubeClient.from_kubeconfig(cluster.kubeconfig).certificate_state(
        NAMESPACE, "cert-failing", HOST
    )
    assert not state.ready
    assert state.reason == "Failed"
    assert "rate limited" in state.message


def test_a_missing_certificate_is_not_ready(cluster: ClusterInfo) -> None:
    state = KubeClient.from_kubeconfig(cluster.kubeconfig).certificate_state(
        NAMESPACE, "nobody", HOST
    )
    assert (state.ready, state.reason) == (False, "NotFound")


def test_an_unreachable_api_server_is_a_retryable_error(
    cluster: ClusterInfo, tmp_path: Any
) -> None:
    text = cluster.kubeconfig.read_text().replace(cluster.server, "https://127.0.0.1:1")
    broken = tmp_path / "kubeconfig"
    broken.write_text(text)
    with pytest.raises(KubeError) as err:
        KubeClient.from_kubeconfig(broken).certificate_state(NAMESPACE, "x", HOST)
    assert err.value.retryable
    assert cluster.token not in str(err.value)
