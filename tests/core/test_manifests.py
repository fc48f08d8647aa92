"""Desired state rendering: golden files, determinism and the known traps."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from core.config import StackConfig, parse_stack_config
from core.manifests import DesiredStateError, cluster_issuer, desired_state, render_domain
from core.records import DomainRecord
from core.status import DomainStatus
from tests.support.regen import may_rewrite
from tests.support.stack_configs import dns01_config

GOLDEN = Path(__file__).parent / "golden"


def record(
    slug: str = "abc1234",
    domain: str = "portal.acme.com",
    status: DomainStatus = DomainStatus.ACTIVE,
    tenant: str | None = None,
) -> DomainRecord:
    return DomainRecord(
        tenant_id=tenant or f"{slug}0-0000-4000-8000-000000000000",
        prefix=slug,
        domain=domain,
        canonical_host=f"{slug}.portal.algapsa.com",
        certificate_secret_name=f"portal-domain-{slug}-tls",
        status=status,
    )


def staging() -> StackConfig:
    return parse_stack_config({}, environment="staging")


def _dump(docs: list[dict[str, object]]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=True) for d in docs)


# A self-signed test CA (EC P-256, CN "portal-domains golden test CA"; its key
# was thrown away): what acmeCaBundle carries for a test ACME server such as Pebble.
TEST_CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBpzCCAU2gAwIBAgIUfFh7j6fDyCDKW8jaickRCCbyy1AwCgYIKoZIzj0EAwIw
KDEmMCQGA1UEAwwdcG9ydGFsLWRvbWFpbnMgZ29sZGVuIHRlc3QgQ0EwIBcNMjYx
MjAxMjMxMTQ2WhgPMjEyNjExMDcyMzExNDZaMCgxJjAkBgNVBAMMHXBvcnRhbC1k
b21haW5zIGdvbGRlbiB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
xnwokP6OwbSqYLjRs0HycA3jfDK42Ij+M4VcFU3xCM4pRp1CKpDjJIBfAXmFP7Fr
hWt0d1B95V0D705vJWbNuqNTMFEwHQYDVR0OBBYEFByz+CP5oHWZkZWYrqKysowr
TxWsMB8GA1UdIwQYMBaAFByz+CP5oHWZkZWYrqKysowrTxWsMA8GA1UdEwEB/wQF
MAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgWG2u4IHvceZ/Yq2gShyaBHHTX9aC0uV1
Ld+f5MQDZuQCIQDfHsg8GTrfHCnfpesJwc4bz4DAGLgEqTo4KBgJa//+Tw==
-----END CERTIFICATE-----
"""


def pebble_config() -> StackConfig:
    """Every ClusterIssuer key set, as for a test ACME server (Pebble) with its own CA."""
    return parse_stack_config(
        {
            "issuerName": "pebble-http01",
            "allowedIssuers": "pebble-http01",
            "acmeServer": "https://pebble.pebble.svc.cluster.local:14000/dir",
            "acmeEmail": "ops@portal-test.dev",
            "acmeAccountKeySecret": "pebble-account",
            "acmeCaBundle": base64.b64encode(TEST_CA_PEM.encode()).decode(),
            "acmeIngressClass": "istio-test",
        },
        environment="prod",
    )


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("default-staging", staging()),
        ("test-acme-server", pebble_config()),
        ("dns01-delegation", dns01_config()),
    ],
)
def test_rendered_manifests_match_the_golden_file(name: str, config: StackConfig) -> None:
    rendered = _dump([cluster_issuer(config), *render_domain(record(), config).documents()])
    golden = GOLDEN / f"{name}.yaml"
    if may_rewrite("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text(), f"re-run with UPDATE_GOLDEN=1 if {golden} should change"


def test_the_certificate_lives_where_the_gateway_reads_secrets() -> None:
    manifests = render_domain(record(), staging())
    assert (
        manifests.certificate["metadata"]["namespace"] == manifests.gateway["metadata"]["namespace"]
    )
    server = manifests.gateway["spec"]["servers"][0]
    assert server["tls"]["credentialName"] == manifests.certificate["spec"]["secretName"]


def test_virtualservice_gateways_are_namespace_qualified() -> None:
    vs = render_domain(record(), staging()).virtual_service
    assert vs["spec"]["gateways"] == ["istio-system/portal-domain-abc1234"]


def test_no_route_of_ours_points_at_a_challenge_solver() -> None:
    # cert-manager's solver Service has a generated name per challenge; its own
    # Ingress routes the challenge path, so no route of ours may name one.
    vs = render_domain(record(), staging()).virtual_service
    assert [r["name"] for r in vs["spec"]["http"]] == [
        "http-to-https",
        "default-route",
        "portal-backend",
    ]
    assert "acme-challenge" not in yaml.safe_dump(vs)
    gateway = render_domain(record(), staging()).gateway
    assert all("httpsRedirect" not in (s.get("tls") or {}) for s in gateway["spec"]["servers"])


def test_the_https_redirect_is_a_port_80_catch_all_and_comes_first() -> None:
    # First: any non-catch-all route above it would also be built on port 80.
    first = render_domain(record(), staging()).virtual_service["spec"]["http"][0]
    assert first == {
        "name": "http-to-https",
        "match": [{"port": 80}],
        "redirect": {"scheme": "https", "redirectCode": 301},
    }


def test_the_cluster_issuer_is_the_one_certificates_name() -> None:
    config = parse_stack_config(
        {"issuerName": "le-http01", "allowedIssuers": "le-http01"}, environment="prod"
    )
    issuer = cluster_issuer(config)
    ref = render_domain(record(), config).certificate["spec"]["issuerRef"]
    assert (issuer["kind"], issuer["metadata"]["name"]) == (ref["kind"], ref["name"])
    assert issuer["apiVersion"] == "cert-manager.io/v1" == f"{ref['group']}/v1"
    assert "namespace" not in issuer["metadata"]  # cluster-scoped


def test_the_cluster_issuer_defaults_to_lets_encrypt_production_with_an_istio_ingress_solver() -> (
    None
):
    acme = cluster_issuer(staging())["spec"]["acme"]
    assert acme == {
        "server": "https://acme-v02.api.letsencrypt.org/directory",
        "email": "platform@algapsa.com",
        "privateKeySecretRef": {"name": "letsencrypt-http01-account-key"},
        "solvers": [{"http01": {"ingress": {"class": "istio"}}}],
    }


def test_the_account_key_secret_follows_the_issuer_name_unless_set() -> None:
    renamed = parse_stack_config(
        {"issuerName": "le-http01", "allowedIssuers": "le-http01"}, environment="prod"
    )
    assert renamed.account_key_secret == "le-http01-account-key"
    assert pebble_config().account_key_secret == "pebble-account"


def test_the_ca_bundle_is_rendered_only_when_configured() -> None:
    assert "caBundle" not in cluster_issuer(staging())["spec"]["acme"]
    bundle = cluster_issuer(pebble_config())["spec"]["acme"]["caBundle"]
    assert base64.b64decode(bundle).decode() == TEST_CA_PEM


def test_the_cluster_issuer_carries_environment_labels_but_no_tenant() -> None:
    labels = cluster_issuer(staging())["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/managed-by": "portal-domains",
        "portal-domains.algapsa.com/environment": "staging",
    }


def test_rendering_is_deterministic_and_ordered_by_slug() -> None:
    records = [record("bbb2222", "b.example-two.com"), record("aaa1111", "a.example-one.com")]
    first = [m.documents() for m in desired_state(records, staging())]
    second = [m.documents() for m in desired_state(list(reversed(records)), staging())]
    assert first == second
    assert [m.slug for m in desired_state(records, staging())] == ["aaa1111", "bbb2222"]


@pytest.mark.parametrize(
    ("status", "deployed"),
    [
        (
            s,
            s
            in {
                DomainStatus.PENDING_CERTIFICATE,
                DomainStatus.CERTIFICATE_ISSUING,
                DomainStatus.CERTIFICATE_FAILED,
                DomainStatus.DEPLOYING,
                DomainStatus.ACTIVE,
            },
        )
        for s in DomainStatus
    ],
)
def test_only_dns_verified_domains_that_are_not_disabled_are_deployed(
    status: DomainStatus, deployed: bool
) -> None:
    assert bool(desired_state([record(status=status)], staging())) is deployed


def test_two_tenants_claiming_one_host_are_refused() -> None:
    with pytest.raises(DesiredStateError, match="portal.acme.com"):
        desired_state([record("aaa1111"), record("bbb2222")], staging())


def test_labels_carry_managed_by_tenant_and_environment() -> None:
    for doc in render_domain(record(), staging()).documents():
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "portal-domains"
        assert labels["portal-domains.algapsa.com/tenant-id"].startswith("abc1234")
        assert labels["portal-domains.algapsa.com/environment"] == "staging"


def test_a_dns01_issuer_follows_the_delegation_cname_into_our_zone_by_rfc2136() -> None:
    config = dns01_config()
    (solver,) = cluster_issuer(config)["spec"]["acme"]["solvers"]
    assert set(solver) == {"dns01"}, "one DNS-01 solver and no HTTP-01 one"
    dns01 = solver["dns01"]
    assert dns01["cnameStrategy"] == "Follow"
    rfc2136 = dns01["rfc2136"]
    assert rfc2136["nameserver"] == "10.96.0.53:53"
    assert rfc2136["tsigKeyName"] == "portal-acme-update"
    assert rfc2136["tsigAlgorithm"] == "HMACSHA256"
    # The secret itself never reaches a manifest (they go to Git): only its Secret's name.
    assert rfc2136["tsigSecretSecretRef"] == {"name": "acme-dns-tsig", "key": "tsig-secret"}
    cert = render_domain(record(), config).certificate
    assert cert["spec"]["issuerRef"]["name"] == "letsencrypt-dns01"


def test_the_delegation_record_points_the_challenge_name_at_the_tenant_prefix_in_our_zone() -> None:
    delegation = dns01_config().challenge_delegation(domain="portal.acme.com", prefix="abc1234")
    assert delegation is not None
    assert delegation.name == "_acme-challenge.portal.acme.com"
    assert delegation.target == "abc1234.acme.portal.algapsa.com"
    assert staging().challenge_delegation(domain="portal.acme.com", prefix="abc1234") is None
