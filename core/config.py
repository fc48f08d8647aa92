"""Per-environment stack configuration, validated when loaded.

The values live in Pulumi.<env>.yaml under the `portal-domains:` namespace
(camelCase keys). Everything the seed hard-coded is here with the seed's value
as the default, except where the seed's value is wrong (the issuer: a DNS-01
issuer cannot solve for a tenant's zone we do not control, so the default is an
HTTP-01 ClusterIssuer). A bad value raises ConfigError naming the key.

The ClusterIssuer the Certificates name is declared from this config too
(core.manifests.cluster_issuer): its ACME server, account e-mail, account key
secret, optional CA bundle (for a test ACME server such as Pebble) and the
ingress class of its HTTP-01 solver. There is no setting for a challenge
route: cert-manager's solver objects are per challenge with generated names,
so the only way to reach them is the Ingress cert-manager creates itself.

`acmeSolver: dns01` is the other way to prove control (DNS-01 by CNAME
delegation, what Cloudflare for SaaS calls DCV delegation): the tenant adds a
second CNAME, `_acme-challenge.<host>` -> `<prefix>.<acmeDns01Zone>`, and
cert-manager follows it (`cnameStrategy: Follow`) and writes the TXT record
into our zone by RFC 2136 (TSIG-signed; the key's secret stays in a Kubernetes
Secret, only its name is configured here). A certificate can then be issued
before the tenant moves traffic to us.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal
from urllib.parse import urlsplit

from core.errors import ErrorKind, PortalDomainsError
from core.shards import MAX_SHARDS

NAMESPACE = "portal-domains"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
)
# Secret and IngressClass names are DNS-1123 subdomains: the hostname shape.
_DNS_SUBDOMAIN = _HOSTNAME
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")
# Deliberately plain: one @, a dot-atom local part, a hostname with a dot. The
# ACME server has the last word; this catches typos before they reach it.
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
)

LETS_ENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
_REL_DIR = re.compile(r"^(?!/)(?!.*\.\.)[A-Za-z0-9._/-]+$")

Mode = Literal["gitops", "cluster"]
Solver = Literal["http01", "dns01"]
# The TSIG algorithms cert-manager's rfc2136 solver accepts (its spelling).
TSIG_ALGORITHMS = ("HMACMD5", "HMACSHA1", "HMACSHA256", "HMACSHA512")
ACME_CHALLENGE_LABEL = "_acme-challenge"
# host[:port], host a hostname, an IPv4 address or a bracketed IPv6 address.
_NAMESERVER = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|"
    r"(?=.{1,253}(?::|$))([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)"
    r"(?::[0-9]{1,5})?$"
)


class ConfigError(PortalDomainsError, ValueError):
    code = "invalid_config"
    kind = ErrorKind.INVALID_INPUT

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config {NAMESPACE}:{key}: {message}")
        self.key = key


@dataclass(frozen=True, kw_only=True)
class ChallengeDelegation:
    """The second CNAME of DNS-01 delegation: `name` must point to `target`."""

    name: str  # _acme-challenge.<vanity host>
    target: str  # <tenant prefix>.<acmeDns01Zone>


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    environment: str
    base_domain: str = "portal.algapsa.com"
    # The Istio ingress gateway reads credentialName secrets from its own
    # namespace, so Certificates (which create the secret) belong there too.
    gateway_namespace: str = "istio-system"
    certificate_namespace: str = "istio-system"
    virtual_service_namespace: str = "msp"
    gateway_selector: Mapping[str, str] = field(default_factory=lambda: {"istio": "ingressgateway"})
    backend_host: str = "sebastian.msp.svc.cluster.local"
    backend_port: int = 3000
    default_redirect_path: str = "/client-portal/dashboard"
    issuer_name: str = "letsencrypt-http01"
    issuer_kind: str = "ClusterIssuer"
    allowed_issuers: tuple[str, ...] = ("letsencrypt-http01",)
    # The ClusterIssuer named issuer_name (declared by this stack unless
    # declare_issuer is false, e.g. when a platform team owns it).
    declare_issuer: bool = True
    acme_server: str = LETS_ENCRYPT_PRODUCTION
    acme_email: str = "platform@algapsa.com"
    # None: "<issuer_name>-account-key" (see account_key_secret), so renaming
    # the issuer does not make two issuers share one ACME account key.
    acme_account_key_secret: str | None = None
    # Base64 of PEM CA certificates the ACME server's TLS chains to; only for
    # test servers (Pebble). Never a reason to skip TLS verification.
    acme_ca_bundle: str | None = None
    # cert-manager writes it as the `kubernetes.io/ingress.class` annotation of
    # the solver Ingress; Istio serves Ingresses of class `istio` (its
    # meshConfig.ingressClass) without an IngressClass object, which
    # `ingressClassName` would need and Istio does not ship.
    acme_ingress_class: str = "istio"
    # How cert-manager proves control of a tenant's host: HTTP-01 through our
    # ingress (one CNAME), or DNS-01 delegated to our zone (two CNAMEs).
    acme_solver: Solver = "http01"
    # dns01 only: our zone the tenants' _acme-challenge CNAMEs point into, the
    # server taking RFC 2136 updates for it, the TSIG key's name and algorithm,
    # and the Secret (in cert-manager's cluster resource namespace) with its secret.
    acme_dns01_zone: str | None = None
    acme_rfc2136_nameserver: str | None = None
    acme_rfc2136_tsig_key_name: str | None = None
    acme_rfc2136_tsig_algorithm: str = "HMACSHA256"
    acme_rfc2136_tsig_secret: str | None = None
    acme_rfc2136_tsig_secret_key: str = "tsig-secret"
    manifest_root: str = "argo-workflow/alga-psa-dev/portal-domains"
    # Review mode: publish to the branch `portal-domains/<environment>` (main plus
    # one commit, for a pull request) instead of pushing to main.
    gitops_review: bool = False
    mode: Mode = "gitops"
    kubeconfig: str | None = None
    deletion_cap: int = 10
    deletion_budget_percent: int = 50
    deletion_budget_enforcement: Literal["advisory", "mandatory"] = "advisory"
    # Stacks the environment's tenants are spread over (core.shards): 1 keeps one
    # stack named after the environment; N > 1 gives <env>-0 .. <env>-<N-1>.
    shards: int = 1

    @property
    def managed_by(self) -> str:
        return NAMESPACE

    @property
    def gitops_review_branch(self) -> str | None:
        return f"portal-domains/{self.environment}" if self.gitops_review else None

    @property
    def account_key_secret(self) -> str:
        """The Secret holding the ClusterIssuer's ACME account key."""
        return self.acme_account_key_secret or f"{self.issuer_name}-account-key"

    def challenge_delegation(self, *, domain: str, prefix: str) -> ChallengeDelegation | None:
        """The `_acme-challenge` CNAME a tenant adds in dns01 mode (None with http01)."""
        if self.acme_solver != "dns01" or self.acme_dns01_zone is None:
            return None
        return ChallengeDelegation(
            name=f"{ACME_CHALLENGE_LABEL}.{domain}", target=f"{prefix}.{self.acme_dns01_zone}"
        )


# camelCase key in Pulumi.<env>.yaml -> dataclass field
_KEYS: dict[str, str] = {
    "".join(
        part if i == 0 else part.capitalize() for i, part in enumerate(f.name.split("_"))
    ): f.name
    for f in fields(StackConfig)
}


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise ConfigError(key, f"expected true or false, got {value!r}")


def _as_int(key: str, value: Any, *, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected an integer, got {value!r}") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise ConfigError(key, f"expected an integer in [{low}, {high}], got {value!r}")
    return number


def _as_str(key: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(key, f"expected {what}, got {value!r}")
    return value


def _as_https_url(key: str, value: Any) -> str:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        raise ConfigError(key, f"expected an https:// URL, got {value!r}")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a malformed port
    except ValueError:
        raise ConfigError(key, f"expected an https:// URL, got {value!r}") from None
    host = parts.hostname or ""
    if parts.scheme != "https" or not _HOSTNAME.match(host):
        # Plain http would hand the ACME account key's signatures to anyone on path.
        raise ConfigError(key, f"expected an https:// URL with a hostname, got {value!r}")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ConfigError(key, f"expected a URL without credentials or fragment, got {value!r}")
    if port == 0:
        raise ConfigError(key, f"expected a port in [1, 65535], got {value!r}")
    return value


def _as_email(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise ConfigError(key, f"expected an e-mail address, got {value!r}")
    return value


def _as_ca_bundle(key: str, value: Any) -> str:
    """Base64 of one or more PEM certificates, as cert-manager's acme.caBundle wants it."""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected base64-encoded PEM certificates, got {value!r}")
    try:
        pem = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(key, "is not base64 (encode the PEM file with `base64 -w0`)") from None
    # Imported here, not at module level: the core stays importable without
    # loading a native extension, and only a configured bundle pays for it.
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(
            key, "does not decode to PEM certificates (-----BEGIN CERTIFICATE----- blocks)"
        ) from None
    if not certificates:
        raise ConfigError(key, "decodes to no PEM certificate")
    return value


def _as_mapping(key: str, value: Any) -> dict[str, str]:
    if isinstance(value, str):
        # "k=v,k2=v2" form, handy on the command line
        pairs = [p for p in value.split(",") if p]
        if not all("=" in p for p in pairs):
            raise ConfigError(key, f"expected key=value pairs, got {value!r}")
        value = dict(p.split("=", 1) for p in pairs)
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(key, f"expected a non-empty map of labels, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _as_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(key, f"expected a non-empty list, got {value!r}")
    return tuple(_as_str(key, v, _DNS_LABEL, "a DNS label") for v in value)


def parse_stack_config(raw: Mapping[str, Any], *, environment: str) -> StackConfig:
    """Validate `raw` (keys with or without the `portal-domains:` prefix)."""
    values: dict[str, Any] = {"environment": environment}
    for full_key, value in raw.items():
        ns, sep, key = full_key.partition(":")
        if not sep:
            key = ns
        elif ns != NAMESPACE:
            continue  # another package's config (e.g. kubernetes:...)
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise ConfigError(key, f"unknown key (known keys: {known})")
        name = _KEYS[key]
        values[name] = _convert(key, name, value)
    _as_str("environment", values["environment"], _DNS_LABEL, "an environment name")
    config = StackConfig(**values)
    if config.issuer_name not in config.allowed_issuers:
        raise ConfigError(
            "issuerName",
            f"{config.issuer_name!r} is not in allowedIssuers {config.allowed_issuers}",
        )
    if config.mode == "cluster" and not config.kubeconfig:
        raise ConfigError("kubeconfig", "cluster mode needs a kubeconfig path")
    if config.acme_solver == "dns01":
        for name in _DNS01_REQUIRED:
            if getattr(config, name) is None:
                raise ConfigError(_camel(name), "is required when acmeSolver is dns01")
        if config.acme_dns01_zone == config.base_domain:
            # <prefix>.<baseDomain> is the tenant's canonical host, a CNAME or
            # address record; a TXT record cannot sit beside a CNAME.
            raise ConfigError(
                "acmeDns01Zone",
                f"must not be baseDomain {config.base_domain!r} (the TXT records would land "
                f"on the canonical hosts): use a zone of its own, e.g. acme.{config.base_domain}",
            )
    return config


_DNS01_REQUIRED = (
    "acme_dns01_zone",
    "acme_rfc2136_nameserver",
    "acme_rfc2136_tsig_key_name",
    "acme_rfc2136_tsig_secret",
)


def _camel(name: str) -> str:
    return next(key for key, field_name in _KEYS.items() if field_name == name)


def _convert(key: str, name: str, value: Any) -> Any:
    if name in {
        "gateway_namespace",
        "certificate_namespace",
        "virtual_service_namespace",
        "issuer_name",
        "environment",
    }:
        return _as_str(key, value, _DNS_LABEL, "a Kubernetes name (DNS label)")
    if name in {"base_domain", "backend_host"}:
        return _as_str(key, value, _HOSTNAME, "a lowercase hostname")
    if name in {"acme_dns01_zone", "acme_rfc2136_tsig_key_name"}:
        return _as_str(key, value, _HOSTNAME, "a lowercase DNS name")
    if name == "acme_rfc2136_nameserver":
        return _as_str(key, value, _NAMESERVER, "host:port of the RFC 2136 server")
    if name == "acme_rfc2136_tsig_algorithm":
        if value not in TSIG_ALGORITHMS:
            raise ConfigError(key, f"expected one of {', '.join(TSIG_ALGORITHMS)}, got {value!r}")
        return value
    if name == "acme_solver":
        if value not in {"http01", "dns01"}:
            raise ConfigError(key, f"expected http01 or dns01, got {value!r}")
        return value
    if name in {
        "acme_account_key_secret",
        "acme_ingress_class",
        "acme_rfc2136_tsig_secret",
        "acme_rfc2136_tsig_secret_key",
    }:
        return _as_str(key, value, _DNS_SUBDOMAIN, "a Kubernetes name (DNS-1123 subdomain)")
    if name == "acme_server":
        return _as_https_url(key, value)
    if name == "acme_email":
        return _as_email(key, value)
    if name == "acme_ca_bundle":
        return _as_ca_bundle(key, value)
    if name == "backend_port":
        return _as_int(key, value, low=1, high=65535)
    if name == "deletion_cap":
        return _as_int(key, value, low=0, high=100_000)
    if name == "shards":
        return _as_int(key, value, low=1, high=MAX_SHARDS)
    if name == "deletion_budget_percent":
        return _as_int(key, value, low=0, high=100)
    if name in {"declare_issuer", "gitops_review"}:
        return _as_bool(key, value)
    if name == "gateway_selector":
        return _as_mapping(key, value)
    if name == "allowed_issuers":
        return _as_list(key, value)
    if name == "default_redirect_path":
        return _as_str(key, value, _PATH, "an absolute URL path")
    if name == "manifest_root":
        return _as_str(key, value, _REL_DIR, "a relative folder inside nm-kube-config")
    if name == "issuer_kind":
        if value not in {"ClusterIssuer", "Issuer"}:
            raise ConfigError(key, f"expected ClusterIssuer or Issuer, got {value!r}")
        return value
    if name == "mode":
        if value not in {"gitops", "cluster"}:
            raise ConfigError(key, f"expected gitops or cluster, got {value!r}")
        return value
    if name == "deletion_budget_enforcement":
        if value not in {"advisory", "mandatory"}:
            raise ConfigError(key, f"expected advisory or mandatory, got {value!r}")
        return value
    if name == "kubeconfig":
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"expected a file path, got {value!r}")
        return value
    raise ConfigError(key, "is not settable")
