"""The loopback stand-in for Istio's ingress gateway (loopback/secret_gateway.py).

A real kube-apiserver holds the Gateways (built by core.manifests, as the stack
declares them) and the kubernetes.io/tls Secrets cert-manager would write; the
probe is the one the workflow uses (adapters.tls.check_certificate).
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.kube import ISTIO, KubeClient
from adapters.tls import CertificateObservation, ProbeTarget, check_certificate
from core.config import parse_stack_config
from core.manifests import gateway as gateway_manifest
from core.records import DomainRecord
from core.status import DomainStatus
from loopback.cluster import ClusterInfo, api_request, running_cluster
from loopback.secret_gateway import SecretGateway
from loopback.tls_ingress import IssuedCertificate, LocalTlsServer, TestCertificateAuthority

pytestmark = pytest.mark.kubernetes

NAMESPACE = "istio-system"
OTHER_NAMESPACE = "msp"
GATEWAYS = f"{ISTIO}/namespaces/{NAMESPACE}/gateways"
CONFIG = parse_stack_config({"issuerName": "test", "allowedIssuers": "test"}, environment="staging")


def secrets_path(namespace: str = NAMESPACE) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as info:
        for namespace in (NAMESPACE, OTHER_NAMESPACE):
            created = api_request(
                info,
                "POST",
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
            assert created.ok, created.text
        yield info


Create = Callable[[str, dict[str, Any]], str]


@pytest.fixture
def create(cluster: ClusterInfo) -> Iterator[Create]:
    """POST an object into a collection; everything created is deleted after the test."""
    paths: list[str] = []

    def _create(collection: str, body: dict[str, Any]) -> str:
        created = api_request(cluster, "POST", collection, body)
        assert created.ok, created.text
        paths.append(f"{collection}/{body['metadata']['name']}")
        return paths[-1]

    yield _create
    for path in paths:
        deleted = api_request(cluster, "DELETE", path)
        assert deleted.ok or deleted.status == 404, deleted.text


@pytest.fixture
def ca(tmp_path: Path) -> TestCertificateAuthority:
    return TestCertificateAuthority(tmp_path / "ca")


@pytest.fixture
def gateway(
    cluster: ClusterInfo, ca: TestCertificateAuthority, tmp_path: Path
) -> Iterator[SecretGateway]:
    # The default certificate comes from the same CA: a host without its Secret
    # fails on the name alone, as behind a real gateway's default certificate.
    kube = KubeClient.from_kubeconfig(cluster.kubeconfig)
    # A long interval: the tests drive sync_once() themselves.
    with SecretGateway(kube, folder=tmp_path / "gateway", ca=ca, interval_seconds=3600) as gw:
        yield gw


@pytest.fixture
def serves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts handed to LocalTlsServer.serve, in order."""
    hosts: list[str] = []
    original = LocalTlsServer.serve

    def counting(server: LocalTlsServer, host: str, certificate: IssuedCertificate) -> None:
        hosts.append(host)
        original(server, host, certificate)

    monkeypatch.setattr(LocalTlsServer, "serve", counting)
    return hosts


def record(host: str) -> DomainRecord:
    slug = uuid.uuid4().hex[:8]
    return DomainRecord(
        tenant_id=str(uuid.uuid4()),
        prefix=slug,
        domain=host,
        canonical_host=f"{slug}.portal.algapsa.com",
        certificate_secret_name=f"portal-domain-{slug}-tls",
        status=DomainStatus.ACTIVE,
    )


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def tls_secret(
    name: str, cert: IssuedCertificate, *, key: IssuedCertificate | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name},
        "data": {"tls.crt": b64(cert.cert_path), "tls.key": b64((key or cert).key_path)},
    }


def declare(create: Create, ca: TestCertificateAuthority, host: str) -> tuple[str, str]:
    """The tenant's Gateway and the Secret cert-manager would write: (gateway, secret) paths."""
    row = record(host)
    secret = create(secrets_path(), tls_secret(row.certificate_secret_name, ca.issue(host)))
    return create(GATEWAYS, gateway_manifest(row, CONFIG)), secret


def probe(gw: SecretGateway, ca: TestCertificateAuthority, host: str) -> CertificateObservation:
    return check_certificate(
        ProbeTarget(
            host=host, port=gw.port, connect_address="127.0.0.1", ca_bundle=str(ca.ca_pem_path)
        )
    )


def assert_default_certificate(observation: CertificateObservation) -> None:
    assert not observation.ok
    assert observation.message.startswith("wrong certificate"), observation.message


def test_a_host_gets_its_gateways_secret_until_the_secret_is_deleted(
    cluster: ClusterInfo, create: Create, ca: TestCertificateAuthority, gateway: SecretGateway
) -> None:
    host = "portal.acme.test"
    _, secret = declare(create, ca, host)
    gateway.sync_once()
    served = probe(gateway, ca, host)
    assert served.ok, served.message
    assert served.subject_alt_names == (host,)
    assert gateway.served_hosts() == {host}
    assert gateway.last_error is None

    assert api_request(cluster, "DELETE", secret).ok
    gateway.sync_once()
    assert_default_certificate(probe(gateway, ca, host))
    assert gateway.served_hosts() == set()


def test_deleting_the_gateway_stops_serving_its_hosts(
    cluster: ClusterInfo, create: Create, ca: TestCertificateAuthority, gateway: SecretGateway
) -> None:
    host = "gone.acme.test"
    gw_path, _ = declare(create, ca, host)
    gateway.sync_once()
    assert probe(gateway, ca, host).ok

    assert api_request(cluster, "DELETE", gw_path).ok
    gateway.sync_once()
    assert_default_certificate(probe(gateway, ca, host))
    assert host not in gateway.served_hosts()


def test_a_host_without_a_gateway_is_not_served(
    create: Create, ca: TestCertificateAuthority, gateway: SecretGateway
) -> None:
    declare(create, ca, "portal.acme.test")
    # The certificate exists in a Secret, but no Gateway names the host.
    create(secrets_path(), tls_secret("orphan-tls", ca.issue("orphan.acme.test")))
    gateway.sync_once()
    assert probe(gateway, ca, "portal.acme.test").ok
    assert_default_certificate(probe(gateway, ca, "orphan.acme.test"))
    assert gateway.served_hosts() == {"portal.acme.test"}


def test_only_secrets_in_the_gateways_namespace_count(
    create: Create, ca: TestCertificateAuthority, gateway: SecretGateway
) -> None:
    host = "elsewhere.acme.test"
    row = record(host)
    create(secrets_path(OTHER_NAMESPACE), tls_secret(row.certificate_secret_name, ca.issue(host)))
    create(GATEWAYS, gateway_manifest(row, CONFIG))
    gateway.sync_once()
    assert_default_certificate(probe(gateway, ca, host))
    assert gateway.served_hosts() == set()
    assert gateway.last_error is None


def test_secrets_without_a_usable_pair_are_skipped(
    create: Create, ca: TestCertificateAuthority, gateway: SecretGateway, serves: list[str]
) -> None:
    mismatched, empty = record("mismatched.acme.test"), record("empty.acme.test")
    other = ca.issue("someone-else.acme.test")
    create(
        secrets_path(),
        tls_secret(mismatched.certificate_secret_name, ca.issue(mismatched.domain), key=other),
    )
    create(
        secrets_path(),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": empty.certificate_secret_name},
            "data": {"ca.crt": b64(ca.ca_pem_path)},
        },
    )
    for row in (mismatched, empty):
        create(GATEWAYS, gateway_manifest(row, CONFIG))
    gateway.sync_once()
    assert gateway.last_error is None
    assert serves == []  # rejected before any file is written or loaded
    assert gateway.served_hosts() == set()
    for row in (mismatched, empty):
        assert_default_certificate(probe(gateway, ca, row.domain))


def test_a_renewed_secret_is_served_and_an_unchanged_one_is_not_served_again(
    cluster: ClusterInfo,
    create: Create,
    ca: TestCertificateAuthority,
    gateway: SecretGateway,
    serves: list[str],
) -> None:
    host = "renewed.acme.test"
    _, secret_path = declare(create, ca, host)
    gateway.sync_once()
    gateway.sync_once()
    assert serves == [host]
    first = probe(gateway, ca, host)

    # A shorter validity than the first certificate's 90 days tells the two apart.
    renewed = ca.issue(host, valid_until=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    stored = api_request(cluster, "GET", secret_path).body
    stored["data"] = tls_secret("unused", renewed)["data"]
    assert api_request(cluster, "PUT", secret_path, stored).ok
    gateway.sync_once()
    second = probe(gateway, ca, host)
    assert serves == [host, host]
    assert second.ok, second.message
    assert second.not_after == renewed.not_after.replace(microsecond=0)
    assert second.not_after != first.not_after


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_thread_follows_the_cluster(
    cluster: ClusterInfo, create: Create, ca: TestCertificateAuthority, tmp_path: Path
) -> None:
    host = "polled.acme.test"
    kube = KubeClient.from_kubeconfig(cluster.kubeconfig)
    with SecretGateway(kube, folder=tmp_path / "gw", ca=ca, interval_seconds=0.05) as gw:
        assert_default_certificate(probe(gw, ca, host))
        gateway_path, _ = declare(create, ca, host)
        assert wait_until(lambda: host in gw.served_hosts())
        served = probe(gw, ca, host)
        assert served.ok, served.message

        assert api_request(cluster, "DELETE", gateway_path).ok
        assert wait_until(lambda: host not in gw.served_hosts())
        assert_default_certificate(probe(gw, ca, host))


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_unreachable_api_server_is_recorded_not_raised(
    ca: TestCertificateAuthority, tmp_path: Path
) -> None:
    kube = KubeClient(
        server=f"https://127.0.0.1:{unused_port()}",
        token=None,
        ssl_context=ssl.create_default_context(),
        timeout=1.0,
    )
    with SecretGateway(kube, folder=tmp_path / "gw", ca=ca, interval_seconds=0.05) as gw:
        assert gw.last_error is not None
        assert "cannot reach the API server" in gw.last_error
        for _ in range(2):  # the thread keeps polling after a failure
            gw.last_error = None
            assert wait_until(lambda: gw.last_error is not None)
        assert_default_certificate(probe(gw, ca, "portal.acme.test"))
