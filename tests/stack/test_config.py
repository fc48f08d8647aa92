"""Stack configuration files load, and bad values name their key."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.config import (
    LETS_ENCRYPT_PRODUCTION,
    LETS_ENCRYPT_STAGING,
    ConfigError,
    StackConfig,
    parse_stack_config,
)
from stack.config import load_stack_config


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_committed_stack_files_are_valid(env: str) -> None:
    config = load_stack_config(env)
    assert config.environment == env
    assert config.certificate_namespace == config.gateway_namespace


def test_prod_and_staging_write_to_their_own_manifest_roots() -> None:
    assert load_stack_config("staging").manifest_root == "argo-workflow/alga-psa-dev/portal-domains"
    assert load_stack_config("prod").manifest_root == "alga-psa/portal-domains"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"portal-domains:backendPort": "http"}, "backendPort"),
        ({"portal-domains:backendPort": "70000"}, "backendPort"),
        ({"portal-domains:mode": "yolo"}, "mode"),
        ({"portal-domains:gatewayNamespace": "Istio_System"}, "gatewayNamespace"),
        ({"portal-domains:baseDomain": "not a host"}, "baseDomain"),
        ({"portal-domains:declareIssuer": "maybe"}, "declareIssuer"),
        ({"portal-domains:acmeChallengeHost": "solver.svc"}, "acmeChallengeHost"),
        ({"portal-domains:manifestRoot": "../escape"}, "manifestRoot"),
        ({"portal-domains:manifestRoot": "/abs"}, "manifestRoot"),
        ({"portal-domains:issuerName": "rogue"}, "issuerName"),
        ({"portal-domains:mode": "cluster"}, "kubeconfig"),
        ({"portal-domains:nonsense": "1"}, "nonsense"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key(raw: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_stack_config(raw, environment="staging")
    assert err.value.key == key
    assert key in str(err.value)


def test_an_unknown_environment_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="prod, staging"):
        load_stack_config("qa")


def test_prod_issues_from_lets_encrypt_production_and_staging_from_its_staging_server() -> None:
    prod, staging = load_stack_config("prod"), load_stack_config("staging")
    assert prod.acme_server == LETS_ENCRYPT_PRODUCTION
    assert staging.acme_server == LETS_ENCRYPT_STAGING
    assert prod.declare_issuer is staging.declare_issuer is True
    assert (prod.acme_ingress_class, staging.acme_ingress_class) == ("istio", "istio")
    # Distinct issuers, so distinct ACME accounts.
    assert prod.account_key_secret == "letsencrypt-http01-account-key"
    assert staging.account_key_secret == "letsencrypt-staging-http01-account-key"


def test_the_issuer_defaults() -> None:
    config = parse_stack_config({}, environment="staging")
    assert config == StackConfig(environment="staging")
    assert config.issuer_name == "letsencrypt-http01"
    assert config.acme_server == "https://acme-v02.api.letsencrypt.org/directory"
    assert config.acme_email == "platform@algapsa.com"
    assert config.account_key_secret == "letsencrypt-http01-account-key"
    assert config.acme_ca_bundle is None
    assert config.acme_ingress_class == "istio"
    assert config.declare_issuer is True


def _pem_certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ACME CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_a_ca_bundle_of_base64_pem_certificates_is_accepted() -> None:
    bundle = base64.b64encode(_pem_certificate() + _pem_certificate()).decode()
    config = parse_stack_config({"acmeCaBundle": bundle}, environment="staging")
    assert config.acme_ca_bundle == bundle


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("acmeServer", "http://acme-v02.api.letsencrypt.org/directory"),
        ("acmeServer", "acme-v02.api.letsencrypt.org/directory"),
        ("acmeServer", "https://"),
        ("acmeServer", "https://user:secret@acme.example-ca.com/dir"),
        ("acmeServer", "https://acme.example-ca.com:99999/dir"),
        ("acmeServer", "https://acme.example-ca.com/dir with space"),
        ("acmeEmail", "platform"),
        ("acmeEmail", "platform@localhost"),
        ("acmeEmail", "a@b@algapsa.com"),
        ("acmeEmail", "platform @algapsa.com"),
        ("acmeAccountKeySecret", "Account_Key"),
        ("acmeIngressClass", ""),
        ("acmeCaBundle", "not base64!"),
        # base64, but of text that is no PEM certificate
        ("acmeCaBundle", base64.b64encode(b"hello").decode()),
        # base64 of a PEM block whose body is no certificate
        (
            "acmeCaBundle",
            base64.b64encode(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ).decode(),
        ),
        # the PEM itself, not base64 of it
        ("acmeCaBundle", "-----BEGIN CERTIFICATE-----"),
    ],
)
def test_a_bad_issuer_value_is_an_error_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_stack_config({key: value}, environment="staging")
    assert err.value.key == key


def test_a_pem_certificate_that_is_not_base64_encoded_is_refused_with_a_hint() -> None:
    pem = _pem_certificate().decode()
    with pytest.raises(ConfigError, match="base64 -w0"):
        parse_stack_config({"acmeCaBundle": pem}, environment="staging")


DNS01 = {
    "acmeSolver": "dns01",
    "acmeDns01Zone": "acme.portal.algapsa.com",
    "acmeRfc2136Nameserver": "ns-acme.algapsa.com:53",
    "acmeRfc2136TsigKeyName": "portal-acme-update",
    "acmeRfc2136TsigSecret": "acme-dns-tsig",
}


@pytest.mark.parametrize(
    "missing",
    ["acmeDns01Zone", "acmeRfc2136Nameserver", "acmeRfc2136TsigKeyName", "acmeRfc2136TsigSecret"],
)
def test_dns01_needs_its_zone_server_and_key_each_named_when_missing(missing: str) -> None:
    raw = {k: v for k, v in DNS01.items() if k != missing}
    with pytest.raises(ConfigError) as err:
        parse_stack_config(raw, environment="prod")
    assert err.value.key == missing
    assert "acmeSolver is dns01" in str(err.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("acmeSolver", "tls-alpn-01"),
        ("acmeRfc2136Nameserver", "ns acme:53"),
        ("acmeRfc2136Nameserver", "https://ns.example.com"),
        ("acmeRfc2136TsigAlgorithm", "hmac-sha256"),
        ("acmeDns01Zone", "Acme_Zone"),
        ("acmeRfc2136TsigSecret", "Not A Secret Name"),
        # TXT records cannot sit beside the canonical hosts' CNAMEs.
        ("acmeDns01Zone", "portal.algapsa.com"),
    ],
)
def test_a_bad_dns01_value_is_an_error_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_stack_config({**DNS01, key: value}, environment="prod")
    assert err.value.key == key


@pytest.mark.parametrize("nameserver", ["10.96.0.53:53", "[fd00::53]:5353", "ns.example.com"])
def test_the_rfc2136_server_may_be_an_address_or_a_hostname_with_an_optional_port(
    nameserver: str,
) -> None:
    config = parse_stack_config({**DNS01, "acmeRfc2136Nameserver": nameserver}, environment="prod")
    assert config.acme_rfc2136_nameserver == nameserver


def test_http01_is_the_default_solver_and_needs_no_dns01_keys() -> None:
    assert parse_stack_config({}, environment="prod").acme_solver == "http01"


def test_review_mode_publishes_to_the_environments_own_branch(tmp_path: Path) -> None:
    assert parse_stack_config({}, environment="prod").gitops_review_branch is None
    config = parse_stack_config({"gitopsReview": "true"}, environment="prod")
    assert config.gitops_review_branch == "portal-domains/prod"
    with pytest.raises(ConfigError) as err:
        parse_stack_config({"gitopsReview": "sometimes"}, environment="prod")
    assert err.value.key == "gitopsReview"

    # The worker's nm-kube-config publisher follows the stack file.
    from core.settings import Settings
    from reconciler.wiring import gitops_repo

    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  portal-domains:gitopsReview: 'true'\n")
    settings = Settings.from_env(
        {
            "PORTAL_DOMAINS_HOME": str(tmp_path / "home"),
            "PORTAL_DOMAINS_STACK_CONFIG_DIR": str(tmp_path),
        }
    )
    assert gitops_repo(settings, "prod").settings.review_branch == "portal-domains/prod"
