"""A real certificate: cert-manager's controllers obtain it from Pebble through DNS-01.

Everything here is the real program, on loopback: kube-apiserver + etcd with
cert-manager's CRDs (loopback/cluster.py), BIND 9 serving the tenants' zones and our
ACME delegation zone, Pebble (Let's Encrypt's ACME test server) and cert-manager's
own ACME controllers (loopback/acme.py). The tenant delegates DNS-01 to us with
`_acme-challenge.<host> CNAME <prefix>.<our ACME zone>`; cert-manager follows it
(`cnameStrategy: Follow`) and writes the TXT record into our zone by RFC 2136,
signed with our TSIG key. Built by scripts/setup-kubernetes.sh and
scripts/setup-certificates.sh.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from adapters.kube import object_path
from core.certificates import condition
from loopback.acme import (
    CLUSTER_RESOURCE_NAMESPACE,
    CertManagerController,
    DnsServer,
    PebbleServer,
    cluster_issuer_manifest,
    create,
    running_cert_manager,
    running_dns_server,
    running_pebble,
    tsig_secret_manifest,
    wait_until_ready,
)
from loopback.cluster import ClusterInfo, api_request, running_cluster

pytestmark = pytest.mark.kubernetes

ISSUER = "portal-domains-dns01"
# Where Istio's ingress gateway reads TLS secrets (ARCHITECTURE.md, "Secret namespace").
GATEWAY_NAMESPACE = "istio-system"
ACME_ZONE = "acme-challenges.portal-domains.test"
TENANT_ZONES = {
    # Delegates DNS-01 to us: the second CNAME of the delegation mode.
    "acme.test": [
        "portal CNAME 1a2b3c4.portal.portal-domains.test.",
        f"_acme-challenge.portal CNAME portal.{ACME_ZONE}.",
    ],
    # Points its portal at us but never added the _acme-challenge CNAME.
    "globex.test": ["portal CNAME 5d6e7f8.portal.portal-domains.test."],
}
# cert-manager sleeps a fixed 60 s after its DNS-01 self-check passes
# (pkg/issuer/acme/dns/dns.go), so an issuance takes a little over a minute.
ISSUE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Pipeline:
    cluster: ClusterInfo
    dns: DnsServer
    pebble: PebbleServer
    controller: CertManagerController
    issuer: dict[str, Any]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    base = tmp_path_factory.mktemp("real-certificate")
    with ExitStack() as stack:
        cluster = stack.enter_context(running_cluster(base / "cluster"))
        dns = stack.enter_context(
            running_dns_server(base / "dns", tenant_zones=TENANT_ZONES, acme_zone=ACME_ZONE)
        )
        pebble = stack.enter_context(running_pebble(base / "pebble", dns_server=dns))
        controller = stack.enter_context(
            running_cert_manager(base / "cert-manager", cluster, dns_server=dns)
        )
        for namespace in (CLUSTER_RESOURCE_NAMESPACE, GATEWAY_NAMESPACE):
            create(
                cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        create(cluster, tsig_secret_manifest(dns))
        issuer = cluster_issuer_manifest(ISSUER, pebble=pebble, dns_server=dns)
        create(cluster, issuer)
        # Ready = cert-manager registered an ACME account with Pebble over verified TLS.
        wait_until_ready(cluster, object_path(issuer), timeout=60)
        (base / "cluster-issuer.yaml").write_text(yaml.safe_dump(issuer, sort_keys=False))
        yield Pipeline(cluster, dns, pebble, controller, issuer)


def _certificate(name: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": GATEWAY_NAMESPACE},
        "spec": {
            "secretName": f"{name}-tls",
            "dnsNames": [host],
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": ISSUER},
            "privateKey": {"algorithm": "ECDSA", "size": 256},
        },
    }


def _challenges_for(cluster: ClusterInfo, host: str) -> list[dict[str, Any]]:
    response = api_request(
        cluster, "GET", f"/apis/acme.cert-manager.io/v1/namespaces/{GATEWAY_NAMESPACE}/challenges"
    )
    assert response.ok, response.message
    return [item for item in response.body["items"] if item["spec"]["dnsName"] == host]


def test_certificate_is_issued_through_cname_delegation(pipeline: Pipeline) -> None:
    host = "portal.acme.test"
    certificate = _certificate("portal-acme-test", host)
    create(pipeline.cluster, certificate, exist_ok=False)

    wait_until_ready(pipeline.cluster, object_path(certificate), timeout=ISSUE_TIMEOUT)

    secret = api_request(
        pipeline.cluster,
        "GET",
        f"/api/v1/namespaces/{GATEWAY_NAMESPACE}/secrets/{certificate['spec']['secretName']}",
    )
    assert secret.ok, secret.message
    chain = x509.load_pem_x509_certificates(base64.b64decode(secret.body["data"]["tls.crt"]))
    leaf, intermediates = chain[0], chain[1:]
    root = pipeline.pebble.issuing_root()

    # The same checks a TLS client does: the path to Pebble's root, the host name, the
    # validity period and the server-auth usage.
    path = (
        PolicyBuilder()
        .store(Store([root]))
        .build_server_verifier(x509.DNSName(host))
        .verify(leaf, intermediates)
    )
    assert path[-1] == root
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [host]
    key = serialization.load_pem_private_key(
        base64.b64decode(secret.body["data"]["tls.key"]), password=None
    )
    assert key.public_key() == leaf.public_key()

    # The TXT record went into our zone (where the tenant's CNAME points), not theirs.
    named_log = pipeline.dns.log.read_text()
    assert f"updating zone '{ACME_ZONE}/IN': adding an RR at 'portal.{ACME_ZONE}' TXT" in named_log
    assert "updating zone 'acme.test/IN'" not in named_log


def test_missing_delegation_cname_leaves_certificate_unready_with_dns_reason(
    pipeline: Pipeline,
) -> None:
    host = "portal.globex.test"
    certificate = _certificate("portal-globex-test", host)
    create(pipeline.cluster, certificate, exist_ok=False)

    # Without the CNAME, cert-manager tries to write the TXT record into the tenant's own
    # zone, which our TSIG key may not update: the server refuses, and cert-manager
    # records that on the Challenge.
    deadline = time.monotonic() + 60
    reasons: list[str] = []
    while time.monotonic() < deadline:
        reasons = [
            str(item.get("status", {}).get("reason") or "")
            for item in _challenges_for(pipeline.cluster, host)
        ]
        if any(reasons):
            break
        time.sleep(0.5)
    reason = next((r for r in reasons if r), "")
    assert "DNS update failed" in reason, f"challenge reasons: {reasons}"
    assert "REFUSED" in reason

    response = api_request(pipeline.cluster, "GET", object_path(certificate))
    assert response.ok, response.message
    ready = condition(response.body, "Ready")
    assert ready is None or ready["status"] != "True"
    # Nothing was written anywhere: not in our zone, not in the tenant's.
    assert pipeline.dns.query(f"_acme-challenge.{host}", "TXT") == []
