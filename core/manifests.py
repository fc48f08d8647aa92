"""Desired state: deployable domain records -> Kubernetes manifests, as plain data.

Pure and deterministic: the same records and config give byte-identical
manifests. Names come from the tenant's collision-safe prefix (a stable natural
key), never from row ids or list positions.

Known traps handled here (see ARCHITECTURE.md):
- The Certificate lives in the gateway's namespace: Istio's ingress gateway
  reads `credentialName` secrets from its own namespace only.
- VirtualService `gateways` entries are `<namespace>/<name>`.
- Port 80 does not use `httpsRedirect` (it would shadow cert-manager's HTTP-01
  solver path, istio/istio#33593). The VirtualService redirects plain HTTP to
  HTTPS with a catch-all route instead, which Istio orders after the solver's
  exact challenge route (see virtual_service and core/istio_routes.py).
- cert-manager's HTTP-01 solver objects are per challenge, with generated
  names: no route of ours can point at them. The ClusterIssuer (cluster_issuer)
  asks cert-manager for a solver Ingress of class `istio`, which Istio turns
  into a route on the same ingress gateway and merges with ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.config import StackConfig
from core.errors import PortalDomainsError
from core.records import DomainRecord

CERT_MANAGER_API = "cert-manager.io/v1"
ISTIO_API = "networking.istio.io/v1"
# Where cert-manager's solver answers (RFC 8555 section 8.3); no route of ours
# may serve it ahead of the solver (policies: acme-challenge-not-shadowed).
ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TENANT = "portal-domains.algapsa.com/tenant-id"
LABEL_TENANT_SLUG = "portal-domains.algapsa.com/tenant-slug"
LABEL_ENVIRONMENT = "portal-domains.algapsa.com/environment"

Manifest = dict[str, Any]


class DesiredStateError(PortalDomainsError, ValueError):
    """The records cannot be deployed together (e.g. one host claimed twice)."""

    code = "invalid_desired_state"


@dataclass(frozen=True, kw_only=True)
class DomainManifests:
    tenant_id: str
    slug: str
    domain: str
    certificate: Manifest
    gateway: Manifest
    virtual_service: Manifest

    def documents(self) -> list[Manifest]:
        return [self.certificate, self.gateway, self.virtual_service]


def resource_name(slug: str) -> str:
    return f"portal-domain-{slug}"


def labels(record: DomainRecord, config: StackConfig) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: config.managed_by,
        LABEL_TENANT: record.tenant_id,
        LABEL_TENANT_SLUG: record.prefix,
        LABEL_ENVIRONMENT: config.environment,
    }


def _metadata(record: DomainRecord, config: StackConfig, namespace: str) -> Manifest:
    return {
        "name": resource_name(record.prefix),
        "namespace": namespace,
        "labels": labels(record, config),
    }


def cluster_issuer(config: StackConfig) -> Manifest:
    """The ACME ClusterIssuer every Certificate names (issuerRef: config.issuer_name).

    One solver, chosen by `acmeSolver`:
    - http01: cert-manager's solver Ingress carries the `kubernetes.io/ingress.class`
      annotation (`ingress.class`), the one Istio's ingress controller reads;
      `ingressClassName` would need an IngressClass object that Istio does not ship.
    - dns01: RFC 2136 updates of our delegation zone, TSIG-signed, following the
      tenant's `_acme-challenge` CNAME (`cnameStrategy: Follow`) into that zone.
      The TSIG secret is referenced, never inlined: this manifest goes to Git.
    Cluster-scoped and shared by all tenants, so no tenant labels.
    """
    acme: Manifest = {
        "server": config.acme_server,
        "email": config.acme_email,
        "privateKeySecretRef": {"name": config.account_key_secret},
        "solvers": [_solver(config)],
    }
    if config.acme_ca_bundle:
        acme["caBundle"] = config.acme_ca_bundle
    return {
        "apiVersion": CERT_MANAGER_API,
        "kind": "ClusterIssuer",
        "metadata": {
            "name": config.issuer_name,
            "labels": {
                LABEL_MANAGED_BY: config.managed_by,
                LABEL_ENVIRONMENT: config.environment,
            },
        },
        "spec": {"acme": acme},
    }


def _solver(config: StackConfig) -> Manifest:
    if config.acme_solver == "http01":
        return {"http01": {"ingress": {"class": config.acme_ingress_class}}}
    return {
        "dns01": {
            "cnameStrategy": "Follow",
            "rfc2136": {
                "nameserver": config.acme_rfc2136_nameserver,
                "tsigKeyName": config.acme_rfc2136_tsig_key_name,
                "tsigAlgorithm": config.acme_rfc2136_tsig_algorithm,
                "tsigSecretSecretRef": {
                    "name": config.acme_rfc2136_tsig_secret,
                    "key": config.acme_rfc2136_tsig_secret_key,
                },
            },
        }
    }


def certificate(record: DomainRecord, config: StackConfig) -> Manifest:
    return {
        "apiVersion": CERT_MANAGER_API,
        "kind": "Certificate",
        "metadata": _metadata(record, config, config.certificate_namespace),
        "spec": {
            "secretName": record.certificate_secret_name,
            "dnsNames": [record.domain],
            "issuerRef": {
                "name": config.issuer_name,
                "kind": config.issuer_kind,
                "group": "cert-manager.io",
            },
            "privateKey": {"rotationPolicy": "Always"},
        },
    }


def gateway(record: DomainRecord, config: StackConfig) -> Manifest:
    return {
        "apiVersion": ISTIO_API,
        "kind": "Gateway",
        "metadata": _metadata(record, config, config.gateway_namespace),
        "spec": {
            "selector": dict(sorted(config.gateway_selector.items())),
            "servers": [
                {
                    "port": {"number": 443, "name": f"https-{record.prefix}", "protocol": "HTTPS"},
                    "hosts": [record.domain],
                    "tls": {"mode": "SIMPLE", "credentialName": record.certificate_secret_name},
                },
                {
                    # No httpsRedirect here: it makes the whole virtual host
                    # TLS-only, the solver's route included (istio#33593). The
                    # VirtualService's catch-all redirect does it instead.
                    "port": {"number": 80, "name": f"http-{record.prefix}", "protocol": "HTTP"},
                    "hosts": [record.domain],
                },
            ],
        },
    }


def virtual_service(record: DomainRecord, config: StackConfig) -> Manifest:
    # No route for /.well-known/acme-challenge/: cert-manager's solver Ingress
    # (class istio) becomes an exact-path route for the same host on the same
    # gateway port 80, and istiod merges it with these routes into one virtual
    # host and sorts it (route.go SortVHostRoutes): catch-all routes go last,
    # every other route keeps its order. On port 80 `http-to-https` is a
    # catch-all (its only condition, the port, is consumed when the port-80
    # routes are built), and istiod drops every later route of this
    # VirtualService on that port; so the solver's exact route comes first
    # there and everything else is redirected. It stays first for that
    # reason: a non-catch-all route above it would also be built on port 80,
    # and one that can match the challenge path would shadow the solver.
    # core/istio_routes.py models this and the policy pack checks it.
    routes: list[Manifest] = [
        {
            "name": "http-to-https",
            "match": [{"port": 80}],
            "redirect": {"scheme": "https", "redirectCode": 301},
        },
        {
            "name": "default-route",
            "match": [{"uri": {"exact": "/"}}],
            "redirect": {"uri": config.default_redirect_path},
        },
        {
            "name": "portal-backend",
            "route": [
                {
                    "destination": {
                        "host": config.backend_host,
                        "port": {"number": config.backend_port},
                    }
                }
            ],
        },
    ]
    return {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _metadata(record, config, config.virtual_service_namespace),
        "spec": {
            "hosts": [record.domain],
            "gateways": [f"{config.gateway_namespace}/{resource_name(record.prefix)}"],
            "http": routes,
        },
    }


def render_domain(record: DomainRecord, config: StackConfig) -> DomainManifests:
    return DomainManifests(
        tenant_id=record.tenant_id,
        slug=record.prefix,
        domain=record.domain,
        certificate=certificate(record, config),
        gateway=gateway(record, config),
        virtual_service=virtual_service(record, config),
    )


def desired_state(records: Iterable[DomainRecord], config: StackConfig) -> list[DomainManifests]:
    """Manifests for every deployable record, ordered by tenant slug.

    Refuses input that would make two tenants share a host, slug or secret:
    the database forbids it, so seeing it here means a bad snapshot.
    """
    deployable = sorted((r for r in records if r.deployable), key=lambda r: r.prefix)
    for attr in ("tenant_id", "prefix", "domain", "certificate_secret_name"):
        seen: dict[str, str] = {}
        for r in deployable:
            value = getattr(r, attr)
            if value in seen:
                raise DesiredStateError(
                    f"{attr} {value!r} is claimed by tenants {seen[value]} and {r.tenant_id}"
                )
            seen[value] = r.tenant_id
    return [render_domain(r, config) for r in deployable]


def desired_documents(records: Iterable[DomainRecord], config: StackConfig) -> list[Manifest]:
    """Every object the stack declares for `records`: the issuer (if ours) and each tenant's."""
    docs = [cluster_issuer(config)] if config.declare_issuer else []
    for item in desired_state(records, config):
        docs.extend(item.documents())
    return docs
