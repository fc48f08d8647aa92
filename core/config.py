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


class ConfigError(PortalDomainsError, ValueError):
    code = "invalid_config"
    kind = ErrorKind.INVALID_INPUT

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config {NAMESPACE}:{key}: {message}")
        self.key = key


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
    manifest_root: str = "argo-workflow/alga-psa-dev/portal-domains"
    mode: Mode = "gitops"
    kubeconfig: str | None = None
    deletion_cap: int = 10
    deletion_budget_percent: int = 50
    deletion_budget_enforcement: Literal["advisory", "mandatory"] = "advisory"

    @property
    def managed_by(self) -> str:
        return NAMESPACE

    @property
    def account_key_secret(self) -> str:
        """The Secret holding the ClusterIssuer's ACME account key."""
        return self.acme_account_key_secret or f"{self.issuer_name}-account-key"


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
    return config


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
    if name in {"acme_account_key_secret", "acme_ingress_class"}:
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
    if name == "deletion_budget_percent":
        return _as_int(key, value, low=0, high=100)
    if name == "declare_issuer":
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
