"""The rules of the `portal-domains` policy pack, as plain functions.

Each rule is `(args, report_violation) -> None`, wrapped below in a
ResourceValidationPolicy (one resource at a time) or a StackValidationPolicy
(rules that compare resources with each other). Allowed values come from the
policy configuration (see policies/settings.py), never from literals here;
what is fixed is the shape of the objects core/manifests.py renders (label
keys, the ACME challenge path).

Every message names the object as `<Kind> <namespace>/<name>` and ends with
what to change. Resource props are read through `kube_object`, which turns the
policy SDK's read-only proxies into plain data; a value that is unknown during
preview raises the SDK's UnknownValueError, which the SDK reports as "can't run
policy during preview" instead of a false violation.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from core import istio_routes
from core.manifests import (
    ACME_CHALLENGE_PREFIX,
    LABEL_ENVIRONMENT,
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    LABEL_TENANT_SLUG,
)
from policies import settings as s

CERT_MANAGER_GROUP = "cert-manager.io"
ISTIO_GROUP = "networking.istio.io"
_HTTPS_PORT = 443
_HTTP_PORT = 80
# The objects rendered per tenant (core.manifests.DomainManifests); anything
# else (the shared ClusterIssuer) belongs to the environment, not a tenant.
_TENANT_KINDS = frozenset(
    {
        (CERT_MANAGER_GROUP, "Certificate"),
        (ISTIO_GROUP, "Gateway"),
        (ISTIO_GROUP, "VirtualService"),
    }
)
_CLUSTER_SCOPED_KINDS = frozenset({(CERT_MANAGER_GROUP, "ClusterIssuer")})


class ResourceArgs(Protocol):
    """What a resource rule reads (pulumi_policy.ResourceValidationArgs has it)."""

    @property
    def resource_type(self) -> str: ...
    @property
    def props(self) -> Mapping[str, Any]: ...
    @property
    def urn(self) -> str: ...
    @property
    def name(self) -> str: ...
    def get_config(self) -> Mapping[str, Any]: ...


class StackResource(Protocol):
    """One resource as a stack rule sees it (pulumi_policy.PolicyResource has it)."""

    @property
    def resource_type(self) -> str: ...
    @property
    def props(self) -> Mapping[str, Any]: ...
    @property
    def urn(self) -> str: ...
    @property
    def name(self) -> str: ...


class StackArgs(Protocol):
    """What a stack rule reads (pulumi_policy.StackValidationArgs has it)."""

    @property
    def resources(self) -> Sequence[StackResource]: ...
    def get_config(self) -> Mapping[str, Any]: ...


# ---------------------------------------------------------------- reading objects
def plain(value: Any) -> Any:
    """Plain dicts and lists from the SDK's Mapping/Sequence proxies."""
    if isinstance(value, Mapping):
        return {str(k): plain(value[k]) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class KubeObject:
    """A Kubernetes object declared in the stack, with the parts the rules read."""

    urn: str
    group: str
    kind: str
    namespace: str
    name: str
    labels: Mapping[str, Any]
    spec: Mapping[str, Any]

    @property
    def ref(self) -> str:
        if (self.group, self.kind) in _CLUSTER_SCOPED_KINDS:
            return f"{self.kind} {self.name or '<no name>'}"
        return f"{self.kind} {self.namespace or '<no namespace>'}/{self.name or '<no name>'}"

    def is_a(self, group: str, kind: str) -> bool:
        return self.group == group and self.kind == kind

    @property
    def per_tenant(self) -> bool:
        return (self.group, self.kind) in _TENANT_KINDS

    def manifest(self) -> dict[str, Any]:
        """The parts core.istio_routes reads, in manifest shape."""
        return {
            "kind": self.kind,
            "metadata": {"namespace": self.namespace, "name": self.name},
            "spec": self.spec,
        }

    @property
    def tenant(self) -> str:
        """Which tenant the object belongs to.

        A tenant's three objects share one name (core.manifests.resource_name of
        its collision-safe slug), which stays put when a label is wrong; the
        labels themselves are labels-required's business.
        """
        return self.name

    @property
    def slug(self) -> str | None:
        slug = self.labels.get(LABEL_TENANT_SLUG)
        if isinstance(slug, str) and slug:
            return slug
        return self.name.removeprefix("portal-domain-") if self.name else None


def kube_object(resource_type: str, props: Mapping[str, Any], urn: str) -> KubeObject | None:
    """The object behind a `kubernetes:<group>/<version>:<Kind>` resource, else None."""
    package, _, rest = resource_type.partition(":")
    if package != "kubernetes" or ":" not in rest:
        return None
    api_version, _, kind = rest.rpartition(":")
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    metadata = _mapping(plain(props.get("metadata")))
    return KubeObject(
        urn=urn,
        group=group,
        kind=kind,
        namespace=_text(metadata.get("namespace")),
        name=_text(metadata.get("name")),
        labels=_mapping(metadata.get("labels")),
        spec=_mapping(plain(props.get("spec"))),
    )


def _stack_objects(args: StackArgs) -> list[KubeObject]:
    objects = (kube_object(r.resource_type, r.props, r.urn) for r in args.resources)
    return [o for o in objects if o is not None]


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _port(value: Any) -> int | None:
    """Port numbers arrive as floats through protobuf Structs."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)


def _config(args: ResourceArgs | StackArgs, policy: str) -> dict[str, Any]:
    return {**s.defaults(policy), **dict(args.get_config())}


def _servers(gateway: KubeObject) -> list[dict[str, Any]]:
    return [_mapping(server) for server in _list(gateway.spec.get("servers"))]


def _gateway_hosts(gateway: KubeObject) -> list[str]:
    """Server hosts, without the optional `namespace/` part Istio allows there."""
    hosts: list[str] = []
    for server in _servers(gateway):
        hosts.extend(_text(h).rpartition("/")[2] for h in _list(server.get("hosts")))
    return hosts


def _hosts(obj: KubeObject) -> list[str]:
    """The hostnames an object serves or certifies."""
    if obj.is_a(CERT_MANAGER_GROUP, "Certificate"):
        return [_text(h) for h in _list(obj.spec.get("dnsNames"))]
    if obj.is_a(ISTIO_GROUP, "Gateway"):
        return _gateway_hosts(obj)
    if obj.is_a(ISTIO_GROUP, "VirtualService"):
        return [_text(h) for h in _list(obj.spec.get("hosts"))]
    return []


def _credential_names(gateway: KubeObject) -> list[str]:
    names = []
    for server in _servers(gateway):
        name = _text(_mapping(server.get("tls")).get("credentialName"))
        if name:
            names.append(name)
    return names


def _by_tenant(objects: Iterable[KubeObject], group: str, kind: str) -> dict[str, list[KubeObject]]:
    result: dict[str, list[KubeObject]] = defaultdict(list)
    for obj in objects:
        if obj.is_a(group, kind):
            result[obj.tenant].append(obj)
    return result


def _resource_object(args: ResourceArgs, group: str, kind: str) -> KubeObject | None:
    obj = kube_object(args.resource_type, args.props, args.urn)
    return obj if obj is not None and obj.is_a(group, kind) else None


# ---------------------------------------------------------------- certificates
def certificate_secret_colocated(args: StackArgs, report_violation: ReportViolation) -> None:
    """The Certificate's secret is created where the gateway reads it, under the name it reads."""
    cfg = _config(args, s.CERTIFICATE_SECRET_COLOCATED)
    gateway_namespace = _text(cfg["gatewayNamespace"])
    objects = _stack_objects(args)
    gateways = _by_tenant(objects, ISTIO_GROUP, "Gateway")
    for cert in objects:
        if not cert.is_a(CERT_MANAGER_GROUP, "Certificate"):
            continue
        if cert.namespace != gateway_namespace:
            report_violation(
                f"{cert.ref} is in namespace '{cert.namespace}', but the Istio ingress gateway "
                f"reads TLS secrets only from its own namespace '{gateway_namespace}', so the "
                f"secret would never be found. Fix: set certificateNamespace to "
                f"'{gateway_namespace}' in Pulumi.<env>.yaml so the Certificate (and its "
                "secret) lives in the gateway namespace.",
                cert.urn,
            )
        secret = _text(cert.spec.get("secretName"))
        credentials = sorted(
            {c for gw in gateways.get(cert.tenant, []) for c in _credential_names(gw)}
        )
        if not secret:
            report_violation(
                f"{cert.ref} has no spec.secretName. Fix: set spec.secretName to the "
                "credentialName of the tenant's Gateway HTTPS server.",
                cert.urn,
            )
        elif not gateways.get(cert.tenant):
            report_violation(
                f"{cert.ref} writes secret '{secret}' but the stack declares no Gateway for the "
                "same tenant to read it. Fix: declare the tenant's Gateway with "
                f"tls.credentialName '{secret}', or drop the Certificate.",
                cert.urn,
            )
        elif secret not in credentials:
            gateway_refs = ", ".join(gw.ref for gw in gateways[cert.tenant])
            report_violation(
                f"{cert.ref} writes secret '{secret}' but {gateway_refs} of the same tenant "
                f"reads credentialName {credentials or 'none'}. Fix: make spec.secretName and "
                "the HTTPS server's tls.credentialName the same name (both come from the "
                "record's certificate_secret_name).",
                cert.urn,
            )


def certificate_issuer_allowed(args: ResourceArgs, report_violation: ReportViolation) -> None:
    """The Certificate is issued by the configured issuer, which is also an allowed one."""
    cert = _resource_object(args, CERT_MANAGER_GROUP, "Certificate")
    if cert is None:
        return
    cfg = _config(args, s.CERTIFICATE_ISSUER_ALLOWED)
    allowed = [_text(i) for i in _list(cfg["allowedIssuers"])]
    kind = _text(cfg["issuerKind"])
    declared = _text(cfg["issuerName"])
    ref = _mapping(cert.spec.get("issuerRef"))
    name = _text(ref.get("name"))
    actual_kind = _text(ref.get("kind")) or "Issuer"  # cert-manager's default
    group = _text(ref.get("group")) or CERT_MANAGER_GROUP
    problems = []
    if name not in allowed:
        problems.append(f"issuerRef.name is '{name or '<missing>'}', not one of {allowed}")
    elif name != declared:
        # Allowed in principle, but only the declared issuer's solver is known to
        # work for our tenants (cluster-issuer-solver checks it).
        problems.append(
            f"issuerRef.name is '{name}', not '{declared}' (issuerName: the {kind} this "
            "stack declares or, with declareIssuer false, relies on)"
        )
    if actual_kind != kind:
        problems.append(f"issuerRef.kind is '{actual_kind}', not '{kind}'")
    if group != CERT_MANAGER_GROUP:
        problems.append(f"issuerRef.group is '{group}', not '{CERT_MANAGER_GROUP}'")
    if problems:
        report_violation(
            f"{cert.ref}: {'; '.join(problems)}. Fix: render the Certificate with "
            "core.manifests.certificate so issuerRef names issuerName, and set "
            "issuerName/issuerKind in Pulumi.<env>.yaml to an issuer listed in allowedIssuers "
            "(its solver is the environment's acmeSolver: HTTP-01, or DNS-01 by delegation).",
            cert.urn,
        )


def certificate_single_host(args: StackArgs, report_violation: ReportViolation) -> None:
    """A Certificate covers exactly one exact host: the one its tenant's Gateway and VS serve."""
    objects = _stack_objects(args)
    gateways = _by_tenant(objects, ISTIO_GROUP, "Gateway")
    services = _by_tenant(objects, ISTIO_GROUP, "VirtualService")
    for cert in objects:
        if not cert.is_a(CERT_MANAGER_GROUP, "Certificate"):
            continue
        names = _hosts(cert)
        if len(names) != 1:
            report_violation(
                f"{cert.ref} lists {len(names)} dnsNames {names}; a portal certificate covers "
                "exactly one vanity host. Fix: set spec.dnsNames to the tenant's one domain "
                "(one Certificate per domain record).",
                cert.urn,
            )
            continue
        host = names[0]
        if "*" in host:
            report_violation(
                f"{cert.ref} asks for the wildcard '{host}', which HTTP-01 cannot issue and "
                "which would cover names the tenant never verified. Fix: set spec.dnsNames to "
                "the tenant's exact domain.",
                cert.urn,
            )
            continue
        for other in [*gateways.get(cert.tenant, []), *services.get(cert.tenant, [])]:
            served = sorted(set(_hosts(other)))
            if served != [host]:
                report_violation(
                    f"{cert.ref} covers '{host}' but {other.ref} of the same tenant serves "
                    f"{served}. Fix: render the Certificate, Gateway and VirtualService from "
                    "the same domain record so they name the same single host.",
                    cert.urn,
                )


def _https_url_problem(server: str) -> str | None:
    try:
        parts = urlsplit(server)
        host = parts.hostname
    except ValueError:
        return f"server '{server}' is not a URL"
    if parts.scheme != "https" or not host:
        return f"server '{server or '<missing>'}' is not an https:// URL"
    return None


def cluster_issuer_solver(args: ResourceArgs, report_violation: ReportViolation) -> None:
    """An ACME ClusterIssuer over verified https with the environment's one kind of solver."""
    issuer = _resource_object(args, CERT_MANAGER_GROUP, "ClusterIssuer")
    if issuer is None:
        return
    cfg = _config(args, s.CLUSTER_ISSUER_SOLVER)
    ingress_class = _text(cfg["acmeIngressClass"])
    solver_kind = _text(cfg["acmeSolver"])
    acme = _mapping(issuer.spec.get("acme"))
    if not acme:
        report_violation(
            f"{issuer.ref} has no spec.acme, so it cannot get publicly trusted certificates "
            "for tenant hosts. Fix: render it with core.manifests.cluster_issuer (an ACME "
            f"issuer with a {solver_kind} solver).",
            issuer.urn,
        )
        return
    problems = []
    url_problem = _https_url_problem(_text(acme.get("server")))
    if url_problem:
        problems.append(f"{url_problem} (cert-manager must reach the CA over verified TLS)")
    if acme.get("skipTLSVerify") is True:
        problems.append(
            "skipTLSVerify is true (anyone on the path could impersonate the CA; a test "
            "server's CA belongs in acmeCaBundle instead)"
        )
    solvers = [_mapping(x) for x in _list(acme.get("solvers"))]
    if not solvers:
        problems.append("it lists no solvers")
    for index, solver in enumerate(solvers):
        where = f"solvers[{index}]"
        if solver_kind == "dns01":
            problems.extend(f"{where} {p}" for p in _dns01_solver_problems(solver))
        else:
            problems.extend(f"{where} {p}" for p in _http01_solver_problems(solver, ingress_class))
    if problems:
        fix = (
            "one dns01 solver, cnameStrategy Follow, rfc2136 with tsigSecretSecretRef "
            "(acmeRfc2136* in Pulumi.<env>.yaml)"
            if solver_kind == "dns01"
            else f"one solver http01.ingress.class '{ingress_class}' (acmeIngressClass in "
            "Pulumi.<env>.yaml)"
        )
        report_violation(
            f"{issuer.ref}: {'; '.join(problems)}. Fix: render the issuer with "
            "core.manifests.cluster_issuer: acmeServer an https:// URL, TLS verified "
            f"(acmeCaBundle for a test CA), {fix}.",
            issuer.urn,
        )


def _http01_solver_problems(solver: Mapping[str, Any], ingress_class: str) -> list[str]:
    ingress = _mapping(_mapping(solver.get("http01")).get("ingress"))
    if "dns01" in solver or not ingress:
        kind = "dns01" if "dns01" in solver else "not http01.ingress"
        return [
            f"is {kind} (this environment's acmeSolver is http01: without the tenant's "
            "_acme-challenge delegation CNAME, DNS-01 cannot solve for a tenant's zone, and "
            "only an Ingress solver is routed by Istio's ingress gateway here)"
        ]
    problems = []
    if _text(ingress.get("ingressClassName")):
        problems.append(
            "sets http01.ingress.ingressClassName, which needs an IngressClass "
            "object Istio does not ship (its ingress controller reads the "
            "kubernetes.io/ingress.class annotation that `class` writes)"
        )
    if _text(ingress.get("class")) != ingress_class:
        problems.append(
            f"has http01.ingress.class '{_text(ingress.get('class')) or '<missing>'}', "
            f"not '{ingress_class}'"
        )
    return problems


def _dns01_solver_problems(solver: Mapping[str, Any]) -> list[str]:
    dns01 = _mapping(solver.get("dns01"))
    if "http01" in solver or not dns01:
        return [
            "is not dns01 (this environment's acmeSolver is dns01: tenants delegate "
            "_acme-challenge to our zone and are told to create only that record)"
        ]
    problems = []
    if _text(dns01.get("cnameStrategy")) != "Follow":
        problems.append(
            f"has cnameStrategy '{_text(dns01.get('cnameStrategy')) or '<missing>'}', not "
            "'Follow' (without it cert-manager writes the TXT record into the tenant's zone, "
            "which our key cannot update)"
        )
    rfc2136 = _mapping(dns01.get("rfc2136"))
    if not rfc2136:
        problems.append("has no rfc2136 provider (the delegation zone is updated by RFC 2136)")
    elif not _text(_mapping(rfc2136.get("tsigSecretSecretRef")).get("name")):
        problems.append(
            "has no rfc2136.tsigSecretSecretRef (unsigned updates would let anyone who can "
            "reach the server write our zone)"
        )
    return problems


# ---------------------------------------------------------------- gateways
def gateway_tls_required(args: ResourceArgs, report_violation: ReportViolation) -> None:
    """HTTPS on 443 with TLS SIMPLE and a credential; port 80 plain HTTP; no other port.

    Whether port 80 may set tls.httpsRedirect is acme-challenge-not-shadowed's
    business: it shadows the HTTP-01 solver, and that rule reports it once.
    """
    gateway = _resource_object(args, ISTIO_GROUP, "Gateway")
    if gateway is None:
        return
    servers = _servers(gateway)
    https = [srv for srv in servers if _port(_mapping(srv.get("port")).get("number")) == 443]
    if not https:
        report_violation(
            f"{gateway.ref} has no server on port 443. Fix: add a server on port 443 with "
            "protocol HTTPS, tls.mode SIMPLE and tls.credentialName set to the tenant's "
            "certificate secret.",
            gateway.urn,
        )
    for server in servers:
        port = _mapping(server.get("port"))
        number = _port(port.get("number"))
        protocol = _text(port.get("protocol")).upper()
        tls = _mapping(server.get("tls"))
        if number == _HTTPS_PORT:
            mode = _text(tls.get("mode"))
            if protocol != "HTTPS" or mode != "SIMPLE" or not _text(tls.get("credentialName")):
                report_violation(
                    f"{gateway.ref}: the port-443 server has protocol '{protocol or '<missing>'}'"
                    f", tls.mode '{mode or '<missing>'}' and credentialName "
                    f"'{_text(tls.get('credentialName')) or '<missing>'}'. Fix: use protocol "
                    "HTTPS, tls.mode SIMPLE and tls.credentialName set to the tenant's "
                    "certificate secret (the gateway terminates TLS).",
                    gateway.urn,
                )
        elif number == _HTTP_PORT and protocol == "HTTP":
            pass  # plain HTTP: cert-manager's solver and the VirtualService's redirect
        else:
            report_violation(
                f"{gateway.ref} has a server on port {number} with protocol "
                f"'{protocol or '<missing>'}'. Fix: expose only port 443 (HTTPS) and port 80 "
                "(HTTP, for redirects and ACME challenges).",
                gateway.urn,
            )


# ---------------------------------------------------------------- virtual services
def _http_routes(vs: KubeObject) -> list[dict[str, Any]]:
    return [_mapping(route) for route in _list(vs.spec.get("http"))]


def _route_label(route: Mapping[str, Any], index: int) -> str:
    name = _text(route.get("name"))
    return f"http[{index}] '{name}'" if name else f"http[{index}]"


def _by_host(objects: Sequence[KubeObject]) -> tuple[dict[str, list[int]], list[int]]:
    """Positions of the objects naming each exact host, and of those with a wildcard host.

    Only objects whose hosts cover a host can add to its virtual host, so the
    model runs per host on these few instead of on the whole stack (which
    would cost tenants x objects).
    """
    exact: dict[str, list[int]] = defaultdict(list)
    wildcard: list[int] = []
    for position, obj in enumerate(objects):
        hosts = {h.lower() for h in _hosts(obj) if h}
        if any("*" in h for h in hosts):
            wildcard.append(position)
        for host in sorted(h for h in hosts if "*" not in h):
            exact[host].append(position)
    return exact, wildcard


def acme_challenge_not_shadowed(args: StackArgs, report_violation: ReportViolation) -> None:
    """Nothing of ours answers /.well-known/acme-challenge/<token> on port 80 before the solver.

    cert-manager's solver Ingress (class istio) becomes an exact-path route in
    the same port-80 virtual host as our routes; core.istio_routes models how
    istiod merges and orders them (route.go SortVHostRoutes, gateway.go
    buildGatewayHTTPRouteConfig), and whether a Gateway's httpsRedirect makes
    the whole virtual host TLS-only (istio/istio#33593).
    """
    objects = _stack_objects(args)
    gateways = [o for o in objects if o.is_a(ISTIO_GROUP, "Gateway")]
    services = [o for o in objects if o.is_a(ISTIO_GROUP, "VirtualService")]
    urns = {(o.kind, o.namespace, o.name): o.urn for o in [*gateways, *services]}
    path = istio_routes.challenge_path()
    gateway_manifests = [g.manifest() for g in gateways]
    service_manifests = [v.manifest() for v in services]
    gateways_of, wildcard_gateways = _by_host(gateways)
    services_of, wildcard_services = _by_host(services)
    # A solver exists only for an exact host (HTTP-01 cannot issue wildcards).
    for host in sorted(set(gateways_of) | set(services_of)):
        # Stack order kept: istiod appends routes in the order it meets them.
        relevant_gateways = sorted({*gateways_of.get(host, []), *wildcard_gateways})
        relevant_services = sorted({*services_of.get(host, []), *wildcard_services})
        found = istio_routes.shadows(
            [gateway_manifests[i] for i in relevant_gateways],
            [service_manifests[i] for i in relevant_services],
            host,
            path,
        )
        for shadow in found:
            origin = shadow.origin
            if origin.kind == "Gateway":
                consequence = (
                    "so Envoy redirects every plain-HTTP request for the host to HTTPS, "
                    f"cert-manager's {ACME_CHALLENGE_PREFIX} solver path included, and HTTP-01 "
                    "issuance and renewal fail (istio/istio#33593). Fix: remove "
                    "tls.httpsRedirect from the port-80 server; the VirtualService's catch-all "
                    "`http-to-https` route redirects everything else and sorts after the "
                    "solver's route."
                )
            else:
                consequence = (
                    f"so on port 80 it answers {ACME_CHALLENGE_PREFIX}<token> in place of "
                    "cert-manager's HTTP-01 solver (istiod moves only catch-all routes behind "
                    "the solver's exact route) and issuance and renewal fail. Fix: remove the "
                    "route, limit it to port 443 (`port: 443` in each match), or make it a "
                    "catch-all (no uri or prefix /, no header, query, method, authority or "
                    "scheme condition) so it sorts after the solver."
                )
            report_violation(
                f"{origin} (host '{host}'): {shadow.reason}, {consequence}",
                urns.get((origin.kind, origin.namespace, origin.name)),
            )


def virtualservice_gateway_qualified(args: ResourceArgs, report_violation: ReportViolation) -> None:
    """Every gateways entry is `<gateway namespace>/<name>`; never empty, never `mesh`."""
    vs = _resource_object(args, ISTIO_GROUP, "VirtualService")
    if vs is None:
        return
    namespace = _text(_config(args, s.VIRTUALSERVICE_GATEWAY_QUALIFIED)["gatewayNamespace"])
    example = f"'{namespace}/{vs.name or '<gateway name>'}'"
    entries = [_text(g) for g in _list(vs.spec.get("gateways"))]
    if not entries:
        report_violation(
            f"{vs.ref} lists no gateways, which Istio reads as `mesh` (sidecars only): the "
            f"ingress gateway never uses it. Fix: set spec.gateways to [{example}].",
            vs.urn,
        )
    for entry in entries:
        gw_namespace, slash, gw_name = entry.partition("/")
        if entry == "mesh":
            problem = "is `mesh` (sidecar traffic), not the ingress gateway"
        elif not slash:
            problem = (
                f"is a bare name, which Istio resolves in the VirtualService's own "
                f"namespace '{vs.namespace}'"
            )
        elif not gw_namespace or not gw_name:
            problem = "has an empty namespace or name"
        elif gw_namespace != namespace:
            problem = f"points at namespace '{gw_namespace}', not the gateway namespace"
        else:
            continue
        report_violation(
            f"{vs.ref}: gateways entry '{entry}' {problem}. Fix: write it as "
            f"<namespace>/<name>, e.g. {example}.",
            vs.urn,
        )


def _destinations(vs: KubeObject) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, destination) for every destination the VirtualService sends traffic to."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for section in ("http", "tcp", "tls"):
        for index, raw in enumerate(_list(vs.spec.get(section))):
            route = _mapping(raw)
            where = f"{section}[{index}]"
            for target in _list(route.get("route")):
                found.append((where, _mapping(_mapping(target).get("destination"))))
            if "mirror" in route:
                found.append((f"{where}.mirror", _mapping(route.get("mirror"))))
            for mirror in _list(route.get("mirrors")):
                found.append((f"{where}.mirrors", _mapping(_mapping(mirror).get("destination"))))
    return found


def virtualservice_destination_allowed(
    args: ResourceArgs, report_violation: ReportViolation
) -> None:
    """Traffic goes only to the configured portal backend (host and port).

    Not to an ACME solver: cert-manager's solver Services are per challenge with
    generated names, and their route comes from the solver's own Ingress.
    """
    vs = _resource_object(args, ISTIO_GROUP, "VirtualService")
    if vs is None:
        return
    cfg = _config(args, s.VIRTUALSERVICE_DESTINATION_ALLOWED)
    allowed = {(_text(cfg["backendHost"]), _port(cfg["backendPort"]))}
    shown = ", ".join(sorted(f"{h}:{p}" for h, p in allowed))
    for where, destination in _destinations(vs):
        host = _text(destination.get("host"))
        port = _port(_mapping(destination.get("port")).get("number"))
        if (host, port) not in allowed:
            report_violation(
                f"{vs.ref}: {where} sends traffic to {host or '<no host>'}:"
                f"{port if port is not None else '<no port>'}, which is not an allowed "
                f"destination ({shown}). Fix: route to backendHost:backendPort from "
                "Pulumi.<env>.yaml, with an explicit port number (the ACME challenge needs no "
                "route of ours: cert-manager's solver Ingress brings its own).",
                vs.urn,
            )


# ---------------------------------------------------------------- all objects
def _host_problem(host: str, base_domain: str, reserved: Sequence[str]) -> str | None:
    name = host.strip().lower().removesuffix(".")
    if not name:
        return "is empty"
    if "*" in name:
        return "is a wildcard"
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return "is an IP address"
    labels = name.split(".")
    if labels[-1].isdigit():
        return "ends in a numeric label (browsers read it as an IP address)"
    base = base_domain.lower().removesuffix(".")
    if name == base or name.endswith("." + base):
        return f"is our own base domain '{base}' or a name under it (canonical hosts)"
    for suffix in reserved:
        suffix = suffix.lower().strip(".")
        if name == suffix or name.endswith("." + suffix):
            return f"is a reserved or special-use name (under '{suffix}')"
    if len(labels) == 1:
        return "is a single label, not a fully qualified name"
    return None


def host_not_reserved(args: ResourceArgs, report_violation: ReportViolation) -> None:
    """No host is under our base domain, reserved/special-use, an IP literal or a wildcard."""
    obj = kube_object(args.resource_type, args.props, args.urn)
    if obj is None:
        return
    cfg = _config(args, s.HOST_NOT_RESERVED)
    base = _text(cfg["baseDomain"])
    reserved = [_text(r) for r in _list(cfg["reservedSuffixes"])]
    for host in sorted(set(_hosts(obj))):
        problem = _host_problem(host, base, reserved)
        if problem is not None:
            report_violation(
                f"{obj.ref} uses host '{host}', which {problem}. Fix: correct the tenant's "
                "domain record to a public hostname the tenant owns (e.g. portal.<their "
                "domain>); hostname validation should have refused this one.",
                obj.urn,
            )


def labels_required(args: ResourceArgs, report_violation: ReportViolation) -> None:
    """Every object carries managed-by and this environment's label; tenant objects a tenant id."""
    obj = kube_object(args.resource_type, args.props, args.urn)
    if obj is None:
        return
    cfg = _config(args, s.LABELS_REQUIRED)
    expected = {
        LABEL_MANAGED_BY: _text(cfg["managedBy"]),
        LABEL_ENVIRONMENT: _text(cfg["environment"]),
    }
    problems = []
    for key, value in expected.items():
        actual = obj.labels.get(key)
        if actual != value:
            problems.append(
                f"{key}={actual if actual is not None else '<missing>'} (expected {value})"
            )
    tenant = obj.labels.get(LABEL_TENANT)
    if obj.per_tenant and (not isinstance(tenant, str) or not tenant):
        problems.append(f"{LABEL_TENANT} is missing (expected the tenant's id)")
    if problems:
        report_violation(
            f"{obj.ref} has wrong labels: {'; '.join(problems)}. Fix: render the object with "
            "core.manifests.labels() (core.manifests.cluster_issuer() for the issuer) for the "
            "stack's own environment config, so pruning and exports can find it.",
            obj.urn,
        )


def unique_host_per_stack(args: StackArgs, report_violation: ReportViolation) -> None:
    """No hostname is claimed by two tenants and no certificate secret name is used twice."""
    objects = _stack_objects(args)
    host_owners: dict[str, dict[str, list[KubeObject]]] = defaultdict(lambda: defaultdict(list))
    secret_users: dict[tuple[str, str], list[KubeObject]] = defaultdict(list)
    credential_owners: dict[tuple[str, str], dict[str, list[KubeObject]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for obj in objects:
        for host in set(_hosts(obj)):
            host_owners[host.lower()][obj.tenant].append(obj)
        if obj.is_a(CERT_MANAGER_GROUP, "Certificate"):
            secret = _text(obj.spec.get("secretName"))
            if secret:
                secret_users[(obj.namespace, secret)].append(obj)
        if obj.is_a(ISTIO_GROUP, "Gateway"):
            for credential in set(_credential_names(obj)):
                credential_owners[(obj.namespace, credential)][obj.tenant].append(obj)
    for host, owners in sorted(host_owners.items()):
        if len(owners) > 1:
            refs = ", ".join(o.ref for group in owners.values() for o in group)
            report_violation(
                f"host '{host}' is claimed by {len(owners)} tenants ({refs}). Fix: keep the "
                "host on one tenant's domain record and remove or disable the others; two "
                "tenants can never share a vanity host.",
                next(iter(owners.values()))[0].urn,
            )
    for (namespace, secret), certs in sorted(secret_users.items()):
        if len(certs) > 1:
            refs = ", ".join(c.ref for c in certs)
            report_violation(
                f"secret {namespace}/{secret} is written by {len(certs)} Certificates ({refs}), "
                "so they overwrite each other. Fix: give each tenant its own secret name "
                "(derived from its collision-safe prefix).",
                certs[0].urn,
            )
    for (namespace, credential), tenants in sorted(credential_owners.items()):
        if len(tenants) > 1:
            refs = ", ".join(g.ref for group in tenants.values() for g in group)
            report_violation(
                f"secret {namespace}/{credential} is served by Gateways of {len(tenants)} "
                f"tenants ({refs}). Fix: give each tenant its own secret name (derived from "
                "its collision-safe prefix).",
                next(iter(tenants.values()))[0].urn,
            )


def deletion_budget(args: StackArgs, report_violation: ReportViolation) -> None:
    """A run may not drop more than maxDeletePercent of the tenants the stack held before it.

    Tenants in tenantsExcused do not count: the database says why they go (a disabled
    or unverified row), or the run holds their deletion for an operator.
    """
    cfg = args.get_config()
    if s.TENANTS_BEFORE not in cfg:
        return  # the caller could not say what the stack held; nothing to compare
    before = {_text(t) for t in _list(plain(cfg[s.TENANTS_BEFORE]))} - {""}
    if not before:
        return
    excused = {_text(t) for t in _list(plain(cfg.get(s.TENANTS_EXCUSED) or []))}
    budget = _port(_config(args, s.DELETION_BUDGET)["maxDeletePercent"])
    limit = 0 if budget is None else budget
    present = {o.slug for o in _stack_objects(args) if o.per_tenant}
    dropped = sorted(before - present - excused)
    percent = 100 * len(dropped) / len(before)
    if percent > limit:
        shown = ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else "")
        report_violation(
            f"this run removes {len(dropped)} of the {len(before)} tenants the stack held "
            f"({percent:.0f}%, more than maxDeletePercent={limit}%): {shown}. Fix: if the record "
            "snapshot is incomplete (a database outage reads zero rows), fix the source and "
            "rerun; if the removals are intended, remove tenants in smaller batches or raise "
            "deletionBudgetPercent in Pulumi.<env>.yaml for this run.",
            None,
        )


# ---------------------------------------------------------------- the pack
ResourceRule = Callable[[ResourceArgs, ReportViolation], None]
StackRule = Callable[[StackArgs, ReportViolation], None]


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A rule and how the pack runs it: per resource, or once over the whole stack."""

    name: str
    description: str
    resource: ResourceRule | None = None
    stack: StackRule | None = None
    enforcement: EnforcementLevel = EnforcementLevel.MANDATORY

    def __post_init__(self) -> None:
        if (self.resource is None) == (self.stack is None):
            raise ValueError(f"rule {self.name} needs exactly one of resource= or stack=")


RULES: tuple[Rule, ...] = (
    Rule(
        name=s.CERTIFICATE_SECRET_COLOCATED,
        description=(
            "Certificates live in the gateway namespace and write the secret their tenant's "
            "Gateway reads."
        ),
        stack=certificate_secret_colocated,
    ),
    Rule(
        name=s.CERTIFICATE_ISSUER_ALLOWED,
        description=(
            "Certificates use the issuer this stack declares, an allowed one of the configured "
            "kind."
        ),
        resource=certificate_issuer_allowed,
    ),
    Rule(
        name=s.CLUSTER_ISSUER_SOLVER,
        description=(
            "ClusterIssuers use an https ACME server with TLS verified and only the "
            "environment's solver: HTTP-01 Ingress of the configured class, or DNS-01 by "
            "RFC 2136 following the tenant's delegation CNAME."
        ),
        resource=cluster_issuer_solver,
    ),
    Rule(
        name=s.CERTIFICATE_SINGLE_HOST,
        description=(
            "Certificates cover exactly one exact host, the one their tenant's Gateway and "
            "VirtualService serve."
        ),
        stack=certificate_single_host,
    ),
    Rule(
        name=s.GATEWAY_TLS_REQUIRED,
        description=(
            "Gateways terminate TLS on 443 with a credential, serve plain HTTP on 80 and expose "
            "no other port."
        ),
        resource=gateway_tls_required,
    ),
    Rule(
        name=s.ACME_CHALLENGE_NOT_SHADOWED,
        description=(
            "No route or httpsRedirect of ours answers the ACME challenge path on port 80 before "
            "cert-manager's HTTP-01 solver does."
        ),
        stack=acme_challenge_not_shadowed,
    ),
    Rule(
        name=s.VIRTUALSERVICE_GATEWAY_QUALIFIED,
        description=(
            "VirtualService gateways are written <gateway namespace>/<name>, never empty or mesh."
        ),
        resource=virtualservice_gateway_qualified,
    ),
    Rule(
        name=s.VIRTUALSERVICE_DESTINATION_ALLOWED,
        description="VirtualServices route only to the configured backend.",
        resource=virtualservice_destination_allowed,
    ),
    Rule(
        name=s.HOST_NOT_RESERVED,
        description=(
            "No host is under our base domain, reserved for special use, an IP address or a "
            "wildcard."
        ),
        resource=host_not_reserved,
    ),
    Rule(
        name=s.LABELS_REQUIRED,
        description=(
            "Every Kubernetes object carries the managed-by, tenant-id and environment labels."
        ),
        resource=labels_required,
    ),
    Rule(
        name=s.UNIQUE_HOST_PER_STACK,
        description="No hostname or certificate secret is claimed by two tenants in one stack.",
        stack=unique_host_per_stack,
    ),
    Rule(
        name=s.DELETION_BUDGET,
        description=(
            "A run drops at most maxDeletePercent of the tenants the stack held before it."
        ),
        stack=deletion_budget,
        enforcement=EnforcementLevel.ADVISORY,
    ),
)


def policies() -> list[Policy]:
    """The pack's policies, each with its config schema (defaults: staging StackConfig)."""
    result: list[Policy] = []
    for rule in RULES:
        properties = s.schema_properties(rule.name)
        schema = PolicyConfigSchema(properties=properties) if properties else None
        policy: Policy
        if rule.stack is not None:
            policy = StackValidationPolicy(
                name=rule.name,
                description=rule.description,
                validate=rule.stack,
                enforcement_level=rule.enforcement,
                config_schema=schema,
            )
        else:
            policy = ResourceValidationPolicy(
                name=rule.name,
                description=rule.description,
                validate=rule.resource,
                enforcement_level=rule.enforcement,
                config_schema=schema,
            )
        result.append(policy)
    return result
