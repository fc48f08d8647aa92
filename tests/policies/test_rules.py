"""The portal-domains policy pack: its rules, its configuration, the engine and `policy check`.

One table of cases drives two kinds of test. Each case starts from the manifests
core.manifests renders for the fixture tenants and changes one thing. The fast
tests call the rule functions directly for every case; the engine tests
(marked `pulumi`) run a subset through the real Pulumi CLI with
`--policy-pack policies --policy-pack-config <file>`: a small program per case
declares the objects as CustomResources behind a render-to-directory provider.
Both check that exactly the expected rules fire, at the expected level, and
that their messages carry the fix.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from cli.exit_codes import ExitCode
from cli.main import main
from core.config import StackConfig
from core.manifests import Manifest, cluster_issuer, render_domain
from core.records import DomainRecord
from core.status import DomainStatus
from core.violations import PolicyViolation
from policies import fixtures
from policies import settings as s
from policies.evaluate import DeclaredResource, evaluate
from policies.rules import RULES, plain
from stack.automation import violation_of
from stack.config import ENVIRONMENTS, load_stack_config
from stack.toolchain import REPO_ROOT, PulumiEnvironment, pulumi_environment
from tests.support.stack_configs import dns01_config

PACK_DIR = REPO_ROOT / "policies"
STAGING = StackConfig(environment="staging")
PROD = load_stack_config("prod")
STAGING_FILE = load_stack_config("staging")
# DNS-01 by delegation (tests/core/test_manifests.py renders the same config).
DNS01 = dns01_config()
RECORDS = fixtures.fixture_records()
SLUGS = [r.prefix for r in RECORDS]
_KIND_SUFFIX = {
    "Certificate": "certificate",
    "Gateway": "gateway",
    "VirtualService": "virtualservice",
}


# ------------------------------------------------------------------ the stack under test
@dataclass
class Doc:
    """One object the test program declares: Pulumi logical name and manifest."""

    name: str
    manifest: Manifest

    @property
    def resource_type(self) -> str:
        return f"kubernetes:{self.manifest['apiVersion']}:{self.manifest['kind']}"

    @property
    def props(self) -> dict[str, Any]:
        return {k: self.manifest[k] for k in ("apiVersion", "kind", "metadata", "spec")}

    @property
    def urn(self) -> str:
        return f"urn:pulumi:ci::policy-case::{self.resource_type}::{self.name}"


ISSUER_DOC = "cluster-issuer"
BACKEND = {"destination": {"host": "sebastian.msp.svc.cluster.local", "port": {"number": 3000}}}


def base_docs(config: StackConfig, records: Sequence[DomainRecord] = RECORDS) -> list[Doc]:
    docs = []
    for record in records:
        for manifest in render_domain(record, config).documents():
            suffix = _KIND_SUFFIX[manifest["kind"]]
            docs.append(Doc(name=f"{record.prefix}-{suffix}", manifest=copy.deepcopy(manifest)))
    if config.declare_issuer:
        docs.append(Doc(name=ISSUER_DOC, manifest=cluster_issuer(config)))
    return docs


def obj(docs: list[Doc], kind: str, tenant: int = 0) -> Manifest:
    """The manifest of `kind` of the `tenant`-th fixture tenant."""
    return next(d.manifest for d in docs if d.name == f"{SLUGS[tenant]}-{_KIND_SUFFIX[kind]}")


def acme(docs: list[Doc]) -> dict[str, Any]:
    """spec.acme of the stack's ClusterIssuer."""
    issuer = next(d.manifest for d in docs if d.name == ISSUER_DOC)
    spec: dict[str, Any] = issuer["spec"]["acme"]
    return spec


def http_routes(docs: list[Doc], tenant: int = 0) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = obj(docs, "VirtualService", tenant)["spec"]["http"]
    return routes


def route(docs: list[Doc], name: str, tenant: int = 0) -> dict[str, Any]:
    routes: list[dict[str, Any]] = obj(docs, "VirtualService", tenant)["spec"]["http"]
    return next(r for r in routes if r.get("name") == name)


def set_host(docs: list[Doc], host: str, tenant: int = 0) -> None:
    obj(docs, "Certificate", tenant)["spec"]["dnsNames"] = [host]
    for server in obj(docs, "Gateway", tenant)["spec"]["servers"]:
        server["hosts"] = [host]
    obj(docs, "VirtualService", tenant)["spec"]["hosts"] = [host]


def set_secret(docs: list[Doc], secret: str, tenant: int = 0) -> None:
    obj(docs, "Certificate", tenant)["spec"]["secretName"] = secret
    obj(docs, "Gateway", tenant)["spec"]["servers"][0]["tls"]["credentialName"] = secret


def https_redirect_on_port_80(docs: list[Doc]) -> None:
    obj(docs, "Gateway")["spec"]["servers"][1]["tls"] = {"httpsRedirect": True}


def seed_layout(docs: list[Doc]) -> None:
    """The seed design: DNS-01 issuer, httpsRedirect on :80, bare gateway name (+ cert in msp)."""
    obj(docs, "Certificate")["spec"]["issuerRef"]["name"] = "letsencrypt-dns"
    https_redirect_on_port_80(docs)
    obj(docs, "VirtualService")["spec"]["gateways"] = ["portal-domain-3f2b6c1"]


def well_known_route(docs: list[Doc], *, at: int = 0) -> None:
    """A route that can answer the challenge path, at position `at` of spec.http."""
    route = {"name": "well-known", "match": [{"uri": {"prefix": "/.well-known/"}}]}
    http_routes(docs).insert(at, {**route, "route": [BACKEND]})


def seed_solver_route(docs: list[Doc]) -> None:
    """The seed's challenge route to a fixed solver Service name, which never exists."""
    destination = {
        "host": "cm-acme-http-solver.istio-system.svc.cluster.local",
        "port": {"number": 8089},
    }
    http_routes(docs).insert(
        0,
        {
            "name": "acme-http01-challenge",
            "match": [{"uri": {"prefix": "/.well-known/acme-challenge/"}}],
            "route": [{"destination": destination}],
        },
    )


def header_regex_route(docs: list[Doc]) -> None:
    match = {"uri": {"regex": ".*"}, "headers": {"x-canary": {"exact": "1"}}}
    http_routes(docs).insert(0, {"name": "canary", "match": [match], "route": [BACKEND]})


def _unchanged(docs: list[Doc]) -> None:
    del docs


# ------------------------------------------------------------------ the cases
COMMITTED = "committed"  # pack config: policies/config/<env>.json


@dataclass(frozen=True, kw_only=True)
class Case:
    id: str
    mutate: Callable[[list[Doc]], None] = _unchanged
    render: StackConfig = STAGING  # what the manifests are rendered with
    pack: StackConfig | str | None = STAGING  # policy config (None: no config file at all)
    tenants_before: Sequence[str] | None = None
    tenants_excused: Sequence[str] = ()
    fires: Mapping[str, str] = field(default_factory=dict)  # rule -> enforcement level
    hints: Sequence[str] = ()  # fix text the output must contain
    engine: bool = True  # also run through the real engine

    @property
    def blocks(self) -> bool:
        return "mandatory" in self.fires.values()

    def docs(self) -> list[Doc]:
        docs = base_docs(self.render)
        self.mutate(docs)
        return docs

    def pack_config(self) -> dict[str, dict[str, Any]] | None:
        if self.pack is None:
            return None
        if isinstance(self.pack, str):
            path = s.committed_config_path(self.render.environment)
            loaded: dict[str, dict[str, Any]] = json.loads(path.read_text())
            return loaded
        return s.policy_pack_config(
            self.pack, tenants_before=self.tenants_before, tenants_excused=self.tenants_excused
        )


M = "mandatory"
CASES: list[Case] = [
    # --- passing
    Case(id="fixtures-pass-with-the-built-in-defaults-and-no-config-file", pack=None),
    Case(
        id="fixtures-pass-the-committed-staging-config",
        render=load_stack_config("staging"),
        pack=COMMITTED,
    ),
    Case(id="fixtures-pass-the-committed-prod-config", render=PROD, pack=COMMITTED),
    Case(
        id="a-well-known-route-after-the-port-80-catch-all-redirect-passes",
        engine=False,
        mutate=lambda d: well_known_route(d, at=1),
    ),
    Case(
        id="a-match-all-regex-route-first-passes-it-sorts-after-the-solver",
        engine=False,
        mutate=lambda d: http_routes(d).insert(
            0, {"match": [{"uri": {"regex": ".*"}}], "route": [BACKEND]}
        ),
    ),
    Case(
        id="a-stack-that-does-not-declare-its-issuer-passes",
        engine=False,
        render=replace(STAGING, declare_issuer=False),
    ),
    Case(
        id="dropping-one-of-four-tenants-is-within-the-deletion-budget",
        tenants_before=[*SLUGS, "0a1b2c3"],
    ),
    # --- certificate-secret-colocated
    Case(
        id="seed-layout-certificate-in-msp-gateway-in-istio-system",
        render=replace(STAGING, certificate_namespace="msp"),
        fires={s.CERTIFICATE_SECRET_COLOCATED: M},
        hints=["set certificateNamespace to 'istio-system'"],
    ),
    Case(
        id="seed-design-as-written",
        render=replace(STAGING, certificate_namespace="msp"),
        mutate=seed_layout,
        fires={
            s.CERTIFICATE_SECRET_COLOCATED: M,
            s.CERTIFICATE_ISSUER_ALLOWED: M,
            s.ACME_CHALLENGE_NOT_SHADOWED: M,
            s.VIRTUALSERVICE_GATEWAY_QUALIFIED: M,
        },
        hints=["set certificateNamespace", "remove tls.httpsRedirect", "<namespace>/<name>"],
    ),
    Case(
        id="certificate-secret-differs-from-gateway-credential",
        mutate=lambda d: obj(d, "Certificate")["spec"].update(secretName="portal-domain-x-tls"),
        fires={s.CERTIFICATE_SECRET_COLOCATED: M},
        hints=["make spec.secretName and the HTTPS server's tls.credentialName the same"],
    ),
    Case(
        id="certificate-without-gateway",
        engine=False,
        mutate=lambda d: d.remove(next(x for x in d if x.name == f"{SLUGS[0]}-gateway")),
        fires={s.CERTIFICATE_SECRET_COLOCATED: M},
        hints=["declare the tenant's Gateway"],
    ),
    # --- certificate-issuer-allowed
    Case(
        id="certificate-issuer-not-allowed",
        mutate=lambda d: obj(d, "Certificate")["spec"]["issuerRef"].update(name="letsencrypt-dns"),
        fires={s.CERTIFICATE_ISSUER_ALLOWED: M},
        hints=["set issuerName/issuerKind in Pulumi.<env>.yaml"],
    ),
    Case(
        id="certificate-namespaced-issuer-where-a-cluster-issuer-is-configured",
        engine=False,
        mutate=lambda d: obj(d, "Certificate")["spec"]["issuerRef"].update(kind="Issuer"),
        fires={s.CERTIFICATE_ISSUER_ALLOWED: M},
        hints=["issuerRef.kind is 'Issuer', not 'ClusterIssuer'"],
    ),
    Case(
        id="certificate-names-an-allowed-issuer-the-stack-does-not-declare",
        render=STAGING_FILE,
        pack=STAGING_FILE,
        mutate=lambda d: obj(d, "Certificate")["spec"]["issuerRef"].update(
            name="letsencrypt-http01"
        ),
        fires={s.CERTIFICATE_ISSUER_ALLOWED: M},
        hints=["not 'letsencrypt-staging-http01' (issuerName: the ClusterIssuer this stack"],
    ),
    # --- cluster-issuer-solver
    Case(
        id="cluster-issuer-solver-uses-ingress-class-name",
        mutate=lambda d: acme(d)["solvers"][0]["http01"].update(
            ingress={"ingressClassName": "istio"}
        ),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["needs an IngressClass object", "http01.ingress.class '<missing>', not 'istio'"],
    ),
    Case(
        id="cluster-issuer-solver-uses-another-ingress-class",
        engine=False,
        mutate=lambda d: acme(d)["solvers"][0]["http01"]["ingress"].update({"class": "nginx"}),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["http01.ingress.class 'nginx', not 'istio'", "acmeIngressClass"],
    ),
    Case(
        id="cluster-issuer-solver-is-dns01",
        engine=False,
        mutate=lambda d: acme(d).update(solvers=[{"dns01": {"route53": {"region": "x"}}}]),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["solvers[0] is dns01"],
    ),
    Case(
        id="a-dns01-delegation-environment-passes",
        render=DNS01,
        pack=DNS01,
    ),
    Case(
        id="dns01-environment-with-an-http01-issuer",
        engine=False,
        render=STAGING,
        pack=replace(
            DNS01,
            environment=STAGING.environment,
            issuer_name=STAGING.issuer_name,
            allowed_issuers=(STAGING.issuer_name,),
        ),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["solvers[0] is not dns01", "acmeRfc2136"],
    ),
    Case(
        id="dns01-certificate-names-an-http01-issuer",
        engine=False,
        render=DNS01,
        pack=replace(DNS01, allowed_issuers=(*DNS01.allowed_issuers, "letsencrypt-http01")),
        mutate=lambda d: obj(d, "Certificate")["spec"]["issuerRef"].update(
            name="letsencrypt-http01"
        ),
        fires={s.CERTIFICATE_ISSUER_ALLOWED: M},
        hints=["not 'letsencrypt-dns01'"],
    ),
    Case(
        id="dns01-solver-without-cname-follow",
        engine=False,
        render=DNS01,
        pack=DNS01,
        mutate=lambda d: acme(d)["solvers"][0]["dns01"].pop("cnameStrategy"),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["cnameStrategy '<missing>', not 'Follow'"],
    ),
    Case(
        id="dns01-solver-with-unsigned-updates",
        engine=False,
        render=DNS01,
        pack=DNS01,
        mutate=lambda d: acme(d)["solvers"][0]["dns01"]["rfc2136"].pop("tsigSecretSecretRef"),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["has no rfc2136.tsigSecretSecretRef"],
    ),
    Case(
        id="cluster-issuer-skips-tls-verification",
        engine=False,
        mutate=lambda d: acme(d).update(skipTLSVerify=True),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["skipTLSVerify is true", "acmeCaBundle"],
    ),
    Case(
        id="cluster-issuer-talks-plain-http-to-the-acme-server",
        engine=False,
        mutate=lambda d: acme(d).update(server="http://acme-v02.api.letsencrypt.org/directory"),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["is not an https:// URL"],
    ),
    Case(
        id="cluster-issuer-is-not-acme",
        engine=False,
        mutate=lambda d: next(x for x in d if x.name == ISSUER_DOC).manifest.update(
            spec={"ca": {"secretName": "internal-ca"}}
        ),
        fires={s.CLUSTER_ISSUER_SOLVER: M},
        hints=["has no spec.acme"],
    ),
    # --- certificate-single-host
    Case(
        id="certificate-with-two-hosts",
        mutate=lambda d: obj(d, "Certificate")["spec"]["dnsNames"].append("www.acme-msp.com"),
        fires={s.CERTIFICATE_SINGLE_HOST: M},
        hints=["set spec.dnsNames to the tenant's one domain"],
    ),
    Case(
        id="certificate-host-differs-from-its-gateway-and-virtualservice",
        engine=False,
        mutate=lambda d: obj(d, "Certificate")["spec"].update(dnsNames=["other.acme-msp.com"]),
        fires={s.CERTIFICATE_SINGLE_HOST: M},
        hints=["from the same domain record"],
    ),
    Case(
        id="certificate-wildcard",
        engine=False,
        mutate=lambda d: obj(d, "Certificate")["spec"].update(dnsNames=["*.acme-msp.com"]),
        fires={s.CERTIFICATE_SINGLE_HOST: M, s.HOST_NOT_RESERVED: M},
        hints=["the tenant's exact domain"],
    ),
    # --- gateway-tls-required
    Case(
        id="gateway-443-server-passes-tls-through",
        mutate=lambda d: obj(d, "Gateway")["spec"]["servers"][0]["tls"].update(mode="PASSTHROUGH"),
        fires={s.GATEWAY_TLS_REQUIRED: M},
        hints=["use protocol HTTPS, tls.mode SIMPLE"],
    ),
    Case(
        id="gateway-port-80-server-speaks-https",
        engine=False,
        mutate=lambda d: obj(d, "Gateway")["spec"]["servers"][1]["port"].update(protocol="HTTPS"),
        fires={s.GATEWAY_TLS_REQUIRED: M},
        hints=["expose only port 443 (HTTPS) and port 80"],
    ),
    Case(
        id="gateway-without-a-443-server",
        engine=False,
        mutate=lambda d: obj(d, "Gateway")["spec"]["servers"].pop(0),
        fires={s.GATEWAY_TLS_REQUIRED: M, s.CERTIFICATE_SECRET_COLOCATED: M},
        hints=["add a server on port 443"],
    ),
    # --- acme-challenge-not-shadowed
    Case(
        id="gateway-https-redirect-on-port-80-shadows-the-acme-solver",
        mutate=https_redirect_on_port_80,
        fires={s.ACME_CHALLENGE_NOT_SHADOWED: M},
        hints=["remove tls.httpsRedirect", "istio/istio#33593", "host 'portal.acme-msp.com'"],
    ),
    Case(
        id="a-well-known-prefix-route-first-shadows-the-acme-solver",
        mutate=well_known_route,
        fires={s.ACME_CHALLENGE_NOT_SHADOWED: M},
        hints=["http[0] 'well-known' (uri prefix /.well-known/)", "limit it to port 443"],
    ),
    Case(
        id="a-regex-route-with-a-header-match-shadows-the-acme-solver",
        engine=False,
        mutate=header_regex_route,
        fires={s.ACME_CHALLENGE_NOT_SHADOWED: M},
        hints=["http[0] 'canary' (uri regex .*, header conditions)"],
    ),
    Case(
        id="the-seed-route-to-a-fixed-solver-service-shadows-the-real-solver",
        engine=False,
        mutate=seed_solver_route,
        fires={s.ACME_CHALLENGE_NOT_SHADOWED: M, s.VIRTUALSERVICE_DESTINATION_ALLOWED: M},
        hints=[
            "http[0] 'acme-http01-challenge'",
            "cm-acme-http-solver.istio-system.svc.cluster.local:8089, which is not an allowed",
        ],
    ),
    # --- virtualservice-gateway-qualified
    Case(
        id="virtualservice-bare-gateway-name",
        mutate=lambda d: obj(d, "VirtualService")["spec"].update(gateways=["portal-domain-x"]),
        fires={s.VIRTUALSERVICE_GATEWAY_QUALIFIED: M},
        hints=["write it as <namespace>/<name>"],
    ),
    Case(
        id="virtualservice-mesh-gateway",
        engine=False,
        mutate=lambda d: obj(d, "VirtualService")["spec"].update(gateways=["mesh"]),
        fires={s.VIRTUALSERVICE_GATEWAY_QUALIFIED: M},
        hints=["is `mesh`"],
    ),
    Case(
        id="virtualservice-without-gateways",
        engine=False,
        mutate=lambda d: obj(d, "VirtualService")["spec"].pop("gateways"),
        fires={s.VIRTUALSERVICE_GATEWAY_QUALIFIED: M},
        hints=["set spec.gateways to ['istio-system/portal-domain-3f2b6c1']"],
    ),
    Case(
        id="virtualservice-gateway-in-another-namespace",
        engine=False,
        mutate=lambda d: obj(d, "VirtualService")["spec"].update(gateways=["msp/portal-domain-x"]),
        fires={s.VIRTUALSERVICE_GATEWAY_QUALIFIED: M},
        hints=["not the gateway namespace"],
    ),
    # --- virtualservice-destination-allowed
    Case(
        id="virtualservice-routes-to-another-port",
        mutate=lambda d: route(d, "portal-backend")["route"][0]["destination"].update(
            port={"number": 8080}
        ),
        fires={s.VIRTUALSERVICE_DESTINATION_ALLOWED: M},
        hints=["route to backendHost:backendPort"],
    ),
    Case(
        id="virtualservice-mirrors-to-another-host",
        engine=False,
        mutate=lambda d: route(d, "portal-backend").update(
            mirror={"host": "collector.evil.svc.cluster.local", "port": {"number": 80}}
        ),
        fires={s.VIRTUALSERVICE_DESTINATION_ALLOWED: M},
        hints=["http[2].mirror sends traffic to collector.evil.svc.cluster.local:80"],
    ),
    # --- host-not-reserved
    Case(
        id="host-under-our-base-domain",
        mutate=lambda d: set_host(d, "acme.portal.algapsa.com"),
        fires={s.HOST_NOT_RESERVED: M},
        hints=["correct the tenant's domain record"],
    ),
    Case(
        id="host-under-a-reserved-suffix",
        engine=False,
        mutate=lambda d: set_host(d, "portal.corp.internal"),
        fires={s.HOST_NOT_RESERVED: M},
        hints=["reserved or special-use name (under 'internal')"],
    ),
    Case(
        id="host-is-localhost",
        engine=False,
        mutate=lambda d: set_host(d, "localhost"),
        fires={s.HOST_NOT_RESERVED: M},
        hints=["under 'localhost'"],
    ),
    Case(
        id="host-is-an-ip-literal",
        engine=False,
        mutate=lambda d: set_host(d, "203.0.113.7"),
        fires={s.HOST_NOT_RESERVED: M},
        hints=["is an IP address"],
    ),
    # --- labels-required
    Case(
        id="labels-name-another-environment",
        mutate=lambda d: obj(d, "Gateway")["metadata"]["labels"].update(
            {"portal-domains.algapsa.com/environment": "prod"}
        ),
        fires={s.LABELS_REQUIRED: M},
        hints=["render the object with core.manifests.labels()"],
    ),
    Case(
        id="labels-lack-the-tenant-id",
        engine=False,
        mutate=lambda d: obj(d, "VirtualService")["metadata"]["labels"].pop(
            "portal-domains.algapsa.com/tenant-id"
        ),
        fires={s.LABELS_REQUIRED: M},
        hints=["tenant-id is missing"],
    ),
    Case(
        id="cluster-issuer-labels-name-another-environment",
        engine=False,
        mutate=lambda d: (
            next(x for x in d if x.name == ISSUER_DOC)
            .manifest["metadata"]["labels"]
            .update({"portal-domains.algapsa.com/environment": "prod"})
        ),
        fires={s.LABELS_REQUIRED: M},
        hints=["ClusterIssuer letsencrypt-http01 has wrong labels"],
    ),
    # --- unique-host-per-stack
    Case(
        id="two-tenants-claim-one-host",
        mutate=lambda d: set_host(d, RECORDS[0].domain, tenant=1),
        fires={s.UNIQUE_HOST_PER_STACK: M},
        hints=["keep the host on one tenant's domain record"],
    ),
    Case(
        id="two-tenants-share-a-secret",
        mutate=lambda d: set_secret(d, RECORDS[0].certificate_secret_name, tenant=1),
        fires={s.UNIQUE_HOST_PER_STACK: M},
        hints=["give each tenant its own secret name"],
    ),
    # --- deletion-budget
    Case(
        id="dropping-most-tenants-is-advisory-in-staging",
        tenants_before=[*SLUGS, "0a1b2c3", "0a1b2c4", "0a1b2c5", "0a1b2c6"],
        fires={s.DELETION_BUDGET: "advisory"},
        hints=["removes 4 of the 7 tenants", "remove tenants in smaller batches"],
    ),
    Case(
        id="dropping-a-quarter-of-tenants-blocks-prod",
        render=PROD,
        pack=PROD,
        tenants_before=[*SLUGS, "0a1b2c3"],
        fires={s.DELETION_BUDGET: M},
        hints=["more than maxDeletePercent=20%", "deletionBudgetPercent in Pulumi.<env>.yaml"],
    ),
    Case(
        # One of four tenants disabled its domain: the database explains the removal,
        # so prod's 20 % budget is not spent on it (it used to stall every reconcile).
        id="a-removal-the-database-explains-passes-prod",
        render=PROD,
        pack=PROD,
        tenants_before=[*SLUGS, "0a1b2c3"],
        tenants_excused=["0a1b2c3"],
    ),
    Case(
        id="excused-removals-do-not-hide-unexplained-ones",
        render=PROD,
        pack=PROD,
        tenants_before=[*SLUGS, "0a1b2c3", "0a1b2c4", "0a1b2c5"],
        tenants_excused=["0a1b2c3"],
        fires={s.DELETION_BUDGET: M},
        hints=["removes 2 of the 6 tenants", "0a1b2c4, 0a1b2c5"],
    ),
]


def _ids(cases: Sequence[Case]) -> list[str]:
    return [c.id for c in cases]


# ------------------------------------------------------------------ calling rules directly
def run_rules(
    docs: list[Doc], pack_config: Mapping[str, Mapping[str, Any]] | None
) -> list[tuple[str, str, str]]:
    """(rule, level, message) for every violation, as the engine would apply config."""
    resources = [DeclaredResource(d.resource_type, d.props, d.urn, d.name) for d in docs]
    return [
        (v.policy, v.enforcement_level, v.message) for v in evaluate(resources, pack_config or {})
    ]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_rule_functions_flag_exactly_the_broken_rule(case: Case) -> None:
    found = run_rules(case.docs(), case.pack_config())
    assert {rule: level for rule, level, _ in found} == dict(case.fires), found
    text = "\n".join(message for _, _, message in found)
    for hint in case.hints:
        assert hint in text


_REF = re.compile(
    r"\b((Certificate|Gateway|VirtualService) [a-z0-9-]+/[a-z0-9-]+|ClusterIssuer [a-z0-9-]+)\b"
)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.fires], ids=_ids([c for c in CASES if c.fires])
)
def test_every_violation_names_the_object_and_says_how_to_fix_it(case: Case) -> None:
    for rule, _, message in run_rules(case.docs(), case.pack_config()):
        assert "Fix:" in message, message
        if rule != s.DELETION_BUDGET:
            assert _REF.search(message), message


def test_deletion_budget_does_nothing_without_tenants_before() -> None:
    found = run_rules(base_docs(PROD)[:3], s.policy_pack_config(PROD))
    assert found == []


def test_deletion_budget_counts_exactly_the_budget_as_allowed() -> None:
    # 1 of 2 dropped is 50%: not more than the staging budget of 50%.
    config = s.policy_pack_config(STAGING, tenants_before=SLUGS[:2])
    found = run_rules([d for d in base_docs(STAGING) if d.name.startswith(SLUGS[0])], config)
    assert found == []


def test_plain_copies_the_policy_sdk_proxies_into_plain_data() -> None:
    from pulumi_policy.proxy import unknown_checking_proxy

    props = {"spec": {"hosts": ["a.example-co.com"], "http": [{"route": []}]}}
    assert plain(unknown_checking_proxy(props)) == props


# ------------------------------------------------------------------ pack definition and config
def test_every_rule_has_a_kebab_case_name_and_a_one_sentence_description() -> None:
    names = [rule.name for rule in RULES]
    assert len(set(names)) == len(names) == 12
    for rule in RULES:
        assert re.fullmatch(r"[a-z]+(-[a-z0-9]+)+", rule.name)
        assert rule.description.endswith(".")
        assert ". " not in rule.description


def test_every_rule_is_mandatory_except_the_deletion_budget() -> None:
    levels = {rule.name: rule.enforcement.value for rule in RULES}
    assert levels.pop(s.DELETION_BUDGET) == "advisory"
    assert set(levels.values()) == {"mandatory"}


def test_policies_build_with_schemas_whose_defaults_are_the_staging_defaults() -> None:
    from policies.rules import policies

    built = {p.name: p for p in policies()}
    assert list(built) == [rule.name for rule in RULES]
    staging = s.policy_pack_config(StackConfig(environment="staging"))
    for name, policy in built.items():
        properties = policy.config_schema.properties if policy.config_schema else {}
        defaults = {k: v["default"] for k, v in properties.items() if "default" in v}
        expected = {k: v for k, v in staging.get(name, {}).items() if k != "enforcementLevel"}
        assert defaults == expected, name


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_committed_policy_configs_equal_what_the_stack_config_produces(environment: str) -> None:
    committed = s.committed_config_path(environment)
    expected = s.render_policy_pack_config(load_stack_config(environment))
    assert committed.read_text() == expected, (
        f"{committed} is stale: run `portal-domains policy config --env {environment} --write`"
    )


def test_deletion_budget_enforcement_follows_the_environment_config() -> None:
    assert s.policy_pack_config(STAGING)[s.DELETION_BUDGET]["enforcementLevel"] == "advisory"
    assert s.policy_pack_config(PROD)[s.DELETION_BUDGET] == {
        "enforcementLevel": "mandatory",
        "maxDeletePercent": 20,
    }


def test_tenants_before_is_passed_sorted_and_only_when_known() -> None:
    assert s.TENANTS_BEFORE not in s.policy_pack_config(STAGING)[s.DELETION_BUDGET]
    config = s.policy_pack_config(STAGING, tenants_before=["b", "a", "b"])
    assert config[s.DELETION_BUDGET][s.TENANTS_BEFORE] == ["a", "b"]
    assert (
        s.policy_pack_config(STAGING, tenants_before=[])[s.DELETION_BUDGET][s.TENANTS_BEFORE] == []
    )


def test_write_policy_pack_config_writes_the_json_the_engine_reads(tmp_path: Path) -> None:
    path = s.write_policy_pack_config(PROD, tmp_path / "sub" / "prod.json", tenants_before=["x"])
    assert json.loads(path.read_text()) == s.policy_pack_config(PROD, tenants_before=["x"])


def test_fixture_records_are_three_active_deployable_tenants_with_valid_hosts() -> None:
    from core.hostnames import normalize_hostname

    records = fixtures.fixture_records()
    assert len(records) == 3
    assert all(r.deployable and r.status == "active" for r in records)
    for record in records:
        assert normalize_hostname(record.domain, base_domain=STAGING.base_domain) == record.domain
    assert len({r.certificate_secret_name for r in records}) == 3


def test_a_policy_event_becomes_a_violation_without_the_rule_description() -> None:
    description = next(r.description for r in RULES if r.name == s.HOST_NOT_RESERVED)
    event = auto.PolicyEvent.from_json(
        {
            "message": f"{description}\nGateway a/b uses host 'x'. Fix: y.",
            "color": "never",
            "policyName": s.HOST_NOT_RESERVED,
            "policyPackName": "portal-domains",
            "policyPackVersion": "1",
            "policyPackVersionTag": "1",
            "enforcementLevel": "mandatory",
            "resourceUrn": "urn:pulumi:staging::portal-domains::x::y",
        }
    )
    violation = violation_of(event)
    assert violation == PolicyViolation(
        policy=s.HOST_NOT_RESERVED,
        enforcement_level="mandatory",
        resource_urn="urn:pulumi:staging::portal-domains::x::y",
        message="Gateway a/b uses host 'x'. Fix: y.",
    )
    assert violation.mandatory


# ------------------------------------------------------------------ through the real engine
PROGRAM = '''\
"""Declares the objects listed in manifests.json, as the real stack program does."""
import json
import os
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("render", render_yaml_to_directory=os.environ["RENDER_DIR"])
for doc in json.loads(Path("manifests.json").read_text()):
    m = doc["manifest"]
    k8s.apiextensions.CustomResource(
        doc["name"],
        api_version=m["apiVersion"],
        kind=m["kind"],
        metadata=m["metadata"],
        spec=m["spec"],
        opts=pulumi.ResourceOptions(provider=provider),
    )
'''
_FIRED = re.compile(r"\[(mandatory|advisory)\]\s+([a-z0-9-]+)\s+\(")


@pytest.fixture(scope="module")
def penv(tmp_path_factory: pytest.TempPathFactory) -> PulumiEnvironment:
    work = tmp_path_factory.mktemp("pulumi")
    env = pulumi_environment(work_dir=work, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
    assert env.toolchain.executable("pulumi"), "no Pulumi toolchain: run scripts/setup.sh"
    return env


@dataclass(frozen=True)
class EngineRun:
    returncode: int
    output: str

    @property
    def fired(self) -> dict[str, str]:
        return {rule: level for level, rule in _FIRED.findall(self.output)}


def preview_with_pack(penv: PulumiEnvironment, case: Case, tmp_path: Path) -> EngineRun:
    program = tmp_path / "program"
    program.mkdir()
    (program / "Pulumi.yaml").write_text("name: policy-case\nruntime: python\n")
    (program / "__main__.py").write_text(PROGRAM)
    docs = [{"name": d.name, "manifest": d.manifest} for d in case.docs()]
    (program / "manifests.json").write_text(json.dumps(docs))
    flags = ["--policy-pack", str(PACK_DIR)]
    if isinstance(case.pack, str):
        flags += ["--policy-pack-config", str(s.committed_config_path(case.render.environment))]
    elif case.pack is not None:
        path = s.write_policy_pack_config(
            case.pack,
            tmp_path / "policy-config.json",
            tenants_before=case.tenants_before,
            tenants_excused=case.tenants_excused,
        )
        flags += ["--policy-pack-config", str(path)]
    exe = penv.toolchain.executable("pulumi")
    assert exe is not None
    env = {**penv.env(), "RENDER_DIR": str(tmp_path / "rendered")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, *args],
            cwd=program,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    init = run("stack", "init", case.id)
    assert init.returncode == 0, init.stderr
    result = run("preview", "--non-interactive", *flags)
    return EngineRun(result.returncode, result.stdout + result.stderr)


ENGINE_CASES = [c for c in CASES if c.engine]


def test_every_rule_passes_and_fails_at_least_once_through_the_engine() -> None:
    violated = {rule for case in ENGINE_CASES for rule in case.fires}
    assert violated == {rule.name for rule in RULES}
    assert any(not case.fires and case.pack == COMMITTED for case in ENGINE_CASES)
    assert any(case.render.certificate_namespace == "msp" for case in ENGINE_CASES), "seed layout"


@pytest.mark.pulumi
@pytest.mark.parametrize("case", ENGINE_CASES, ids=_ids(ENGINE_CASES))
def test_the_engine_runs_the_pack_and_blocks_only_mandatory_violations(
    penv: PulumiEnvironment, tmp_path: Path, case: Case
) -> None:
    run = preview_with_pack(penv, case, tmp_path)
    assert "Loading policy packs" in run.output or "Policies:" in run.output, run.output
    assert run.fired == dict(case.fires), run.output
    assert (run.returncode != 0) == case.blocks, run.output
    for hint in case.hints:
        assert hint in run.output, run.output
    if not case.blocks:
        assert "error:" not in run.output, run.output


# ------------------------------------------------------------------ `portal-domains policy check`
@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(home))
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", f"sqlite:///{home / 'db.sqlite'}")
    return home


@pytest.mark.pulumi
def test_policy_check_passes_the_fixture_tenants(
    cli_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["policy", "check", "--env", "prod", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["passed"] is True
    assert report["violations"] == []
    assert report["tenants"] == sorted(SLUGS)
    assert not list(cli_home.glob("policy-check-*")), "the scratch stack is removed"


@pytest.mark.pulumi
def test_policy_check_exits_6_and_lists_a_mandatory_violation(
    cli_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = [replace(RECORDS[0], domain="acme.portal.algapsa.com"), *RECORDS[1:]]
    monkeypatch.setattr(fixtures, "fixture_records", lambda base_domain=None: bad)
    code = main(["policy", "check", "--env", "staging"])
    out = capsys.readouterr().out
    assert code == ExitCode.POLICY_VIOLATION, out
    assert f"[mandatory] {s.HOST_NOT_RESERVED}" in out
    assert "correct the tenant's domain record" in out


def test_policy_check_refuses_an_unknown_environment(
    cli_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", "--env", "nowhere"]) == 2
    assert "no stack file Pulumi.nowhere.yaml" in capsys.readouterr().err


@pytest.mark.pulumi
def test_policy_check_without_fixtures_checks_the_database_rows(
    cli_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from db import migrate
    from db.service import DomainService
    from db.session import make_engine, make_session_factory

    url = f"sqlite:///{cli_home / 'rows.db'}"
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", url)
    migrate.upgrade(url)
    service = DomainService(
        make_session_factory(make_engine(url)), base_domain="portal.algapsa.com"
    )
    tenant = uuid.uuid4()
    service.request(tenant, "portal.acme.com", "operator:test")
    service.record_status(
        tenant,
        expected_status=DomainStatus.PENDING_DNS,
        new_status=DomainStatus.VERIFYING_DNS,
        message="checking",
    )
    service.record_status(
        tenant,
        expected_status=DomainStatus.VERIFYING_DNS,
        new_status=DomainStatus.PENDING_CERTIFICATE,
        message="verified",
    )
    assert main(["policy", "check", "--env", "staging", "--no-fixtures", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "database"
    assert report["tenants"] == [service.get(tenant).canonical_prefix]


def test_policy_config_prints_the_committed_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "config", "--env", "prod"]) == 0
    assert capsys.readouterr().out == s.committed_config_path("prod").read_text()
