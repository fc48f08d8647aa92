"""The model of istiod's port-80 routes: is cert-manager's HTTP-01 solver reachable?

Each case starts from the Gateway and VirtualService core.manifests renders and
changes one thing; the expectations restate istiod's merge and sort
(route.go SortVHostRoutes, gateway.go buildGatewayHTTPRouteConfig).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from core import istio_routes as model
from core.config import StackConfig
from core.manifests import Manifest, render_domain
from core.records import DomainRecord
from core.status import DomainStatus

HOST = "portal.acme.com"
PATH = model.challenge_path()
BACKEND = {"destination": {"host": "sebastian.msp.svc.cluster.local", "port": {"number": 3000}}}


def ours() -> tuple[Manifest, Manifest]:
    record = DomainRecord(
        tenant_id="abc12340-0000-4000-8000-000000000000",
        prefix="abc1234",
        domain=HOST,
        canonical_host="abc1234.portal.algapsa.com",
        certificate_secret_name="portal-domain-abc1234-tls",
        status=DomainStatus.ACTIVE,
    )
    rendered = render_domain(record, StackConfig(environment="staging"))
    return copy.deepcopy(rendered.gateway), copy.deepcopy(rendered.virtual_service)


def http(vs: Manifest) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = vs["spec"]["http"]
    return routes


def shadowed(gateways: list[Manifest], services: list[Manifest]) -> list[str]:
    return model.challenge_shadowed_by(gateways, services, HOST, PATH)


# ------------------------------------------------------------------ our manifests
def test_the_solver_is_reachable_with_our_manifests() -> None:
    gateway, vs = ours()
    assert shadowed([gateway], [vs]) == []


def test_on_port_80_the_solver_comes_first_and_our_catch_all_redirect_last() -> None:
    gateway, vs = ours()
    vhost = model.virtual_host([gateway], [vs], HOST, PATH)
    assert [(r.origin.kind, r.label) for r in vhost.routes] == [
        ("Ingress", "HTTP-01 solver"),
        # default-route and portal-backend are never built on port 80: istiod
        # stops at http-to-https, a catch-all once its port condition is applied.
        ("VirtualService", "http[0] 'http-to-https'"),
    ]
    assert vhost.https_redirects == ()


def test_a_wrong_token_path_is_not_served_by_the_solver_route() -> None:
    solver = model.solver_route(PATH)
    assert solver.can_match(model.Request(host=HOST, path=PATH))
    assert not solver.can_match(model.Request(host=HOST, path=PATH + "x"))
    assert not solver.catch_all


# ------------------------------------------------------------------ shadowed
def test_a_prefix_well_known_route_shadows_the_solver() -> None:
    gateway, vs = ours()
    http(vs).insert(0, {"name": "well-known", "match": [{"uri": {"prefix": "/.well-known/"}}]})
    http(vs)[0]["route"] = [BACKEND]
    assert shadowed([gateway], [vs]) == [
        "VirtualService msp/portal-domain-abc1234 http[0] 'well-known' "
        f"(uri prefix /.well-known/) matches {PATH} and is not a catch-all, so istiod keeps it "
        "ahead of the solver's exact route"
    ]


def test_a_regex_match_all_route_with_a_header_condition_shadows_the_solver() -> None:
    gateway, vs = ours()
    route = {
        "name": "canary",
        "match": [{"uri": {"regex": ".*"}, "headers": {"x-canary": {"exact": "1"}}}],
        "route": [BACKEND],
    }
    http(vs).insert(0, route)
    found = shadowed([gateway], [vs])
    assert len(found) == 1
    assert "http[0] 'canary' (uri regex .*, header conditions)" in found[0]


def test_an_https_redirect_on_the_port_80_server_shadows_the_solver() -> None:
    gateway, vs = ours()
    gateway["spec"]["servers"][1]["tls"] = {"httpsRedirect": True}
    assert shadowed([gateway], [vs]) == [
        "Gateway istio-system/portal-domain-abc1234 servers[1] 'http-abc1234' on port 80 "
        "sets tls.httpsRedirect (the virtual host requires TLS)"
    ]


def test_an_https_redirect_shadows_even_without_a_virtual_service() -> None:
    # gateway.go also marks the virtual host of a server's own host names.
    gateway, _ = ours()
    gateway["spec"]["servers"][1]["tls"] = {"httpsRedirect": True}
    assert len(shadowed([gateway], [])) == 1


def test_a_route_of_another_virtual_service_for_the_host_shadows_the_solver() -> None:
    # istiod merges every VirtualService bound to a port-80 server of the host.
    gateway, vs = ours()
    other = copy.deepcopy(vs)
    other["metadata"]["name"] = "legacy-acme"
    other["spec"]["http"] = [
        {"match": [{"uri": {"prefix": "/.well-known/acme-challenge"}}], "route": [BACKEND]}
    ]
    found = shadowed([gateway], [vs, other])
    assert [f.split(" (")[0] for f in found] == ["VirtualService msp/legacy-acme http[0]"]


def test_a_shadowing_route_bound_through_a_wildcard_server_still_shadows() -> None:
    # Server "*" and VirtualService host exact: the intersection is the exact host.
    gateway, vs = ours()
    gateway["spec"]["servers"][1]["hosts"] = ["*"]
    http(vs).insert(0, {"match": [{"uri": {"exact": PATH}}], "route": [BACKEND]})
    assert len(shadowed([gateway], [vs])) == 1


# ------------------------------------------------------------------ not shadowed
@pytest.mark.parametrize(
    "route",
    [
        {"name": "all", "redirect": {"scheme": "https"}},  # no match at all
        {"name": "root", "match": [{"uri": {"prefix": "/"}}], "redirect": {"scheme": "https"}},
        {"name": "re", "match": [{"uri": {"regex": ".*"}}], "route": [BACKEND]},
        {"name": "p80", "match": [{"port": 80, "uri": {"prefix": "/"}}], "route": [BACKEND]},
    ],
    ids=["no-match", "prefix-root", "regex-match-all", "port-80-prefix-root"],
)
def test_a_catch_all_route_does_not_shadow_the_solver(route: dict[str, Any]) -> None:
    gateway, vs = ours()
    http(vs).insert(0, route)
    vhost = model.virtual_host([gateway], [vs], HOST, PATH)
    assert vhost.routes[0].solver
    assert shadowed([gateway], [vs]) == []


@pytest.mark.parametrize(
    ("match", "why"),
    [
        ({"port": 443, "uri": {"prefix": "/.well-known/"}}, "built for port 443 only"),
        ({"uri": {"prefix": "/.well-known/"}, "method": {"exact": "POST"}}, "validation is GET"),
        ({"uri": {"prefix": "/.well-known/"}, "scheme": {"exact": "https"}}, "port 80 is http"),
        ({"uri": {"prefix": "/.well-known/"}, "queryParams": {"a": {"exact": "1"}}}, "no query"),
        ({"uri": {"prefix": "/.well-known/"}, "authority": {"exact": "other.com"}}, "other host"),
        ({"uri": {"prefix": "/.well-known/"}, "gateways": ["istio-system/other"]}, "other gw"),
        ({"uri": {"exact": "/.well-known/acme-challenge/"}}, "only the bare prefix"),
        ({"uri": {"prefix": "/.WELL-KNOWN/"}}, "case-sensitive"),
    ],
)
def test_a_route_that_cannot_match_the_validation_request_does_not_shadow(
    match: dict[str, Any], why: str
) -> None:
    gateway, vs = ours()
    http(vs).insert(0, {"name": "narrow", "match": [match], "route": [BACKEND]})
    assert shadowed([gateway], [vs]) == [], why


def test_ignore_uri_case_makes_an_upper_case_prefix_shadow() -> None:
    gateway, vs = ours()
    match = {"uri": {"prefix": "/.WELL-KNOWN/"}, "ignoreUriCase": True}
    http(vs).insert(0, {"match": [match], "route": [BACKEND]})
    assert len(shadowed([gateway], [vs])) == 1


def test_a_route_after_the_port_80_catch_all_is_never_built_on_port_80() -> None:
    gateway, vs = ours()
    http(vs).insert(1, {"match": [{"uri": {"prefix": "/.well-known/"}}], "route": [BACKEND]})
    assert shadowed([gateway], [vs]) == []
    # The same route above the redirect is built, and shadows.
    http(vs).insert(0, http(vs).pop(1))
    assert len(shadowed([gateway], [vs])) == 1


@pytest.mark.parametrize(
    "gateways",
    [["mesh"], ["portal-domain-abc1234"], ["istio-system/other"]],
    ids=["mesh", "bare-name-resolves-to-msp", "another-gateway"],
)
def test_a_virtual_service_not_bound_to_the_gateway_adds_no_route(gateways: list[str]) -> None:
    gateway, vs = ours()
    vs["spec"]["gateways"] = gateways
    http(vs).insert(0, {"match": [{"uri": {"prefix": "/.well-known/"}}], "route": [BACKEND]})
    assert shadowed([gateway], [vs]) == []


def test_a_wildcard_virtual_service_host_builds_another_virtual_host() -> None:
    # "*" server and "*.acme.com" VirtualService intersect to "*.acme.com"; Envoy
    # picks the solver's exact-host virtual host over it.
    gateway, vs = ours()
    gateway["spec"]["servers"][1]["hosts"] = ["*"]
    vs["spec"]["hosts"] = ["*.acme.com"]
    http(vs).insert(0, {"match": [{"uri": {"prefix": "/.well-known/"}}], "route": [BACKEND]})
    assert shadowed([gateway], [vs]) == []
    gateway["spec"]["servers"][1]["hosts"] = [HOST]  # now the intersection is the host
    assert len(shadowed([gateway], [vs])) == 1


def test_a_server_host_of_another_namespace_does_not_bind_the_virtual_service() -> None:
    gateway, vs = ours()
    gateway["spec"]["servers"][1]["hosts"] = [f"other/{HOST}"]
    http(vs).insert(0, {"match": [{"uri": {"prefix": "/.well-known/"}}], "route": [BACKEND]})
    assert shadowed([gateway], [vs]) == []
    gateway["spec"]["servers"][1]["hosts"] = [f"msp/{HOST}"]
    assert len(shadowed([gateway], [vs])) == 1


def test_an_https_redirect_on_a_wildcard_server_nothing_binds_to_does_not_shadow() -> None:
    gateway, vs = ours()
    catch_all = copy.deepcopy(gateway)
    catch_all["metadata"]["name"] = "redirect-all"
    catch_all["spec"]["servers"] = [
        {
            "port": {"number": 80, "name": "http", "protocol": "HTTP"},
            "hosts": ["*"],
            "tls": {"httpsRedirect": True},
        }
    ]
    assert shadowed([gateway, catch_all], [vs]) == []
    vs["spec"]["gateways"].append("istio-system/redirect-all")  # now it marks our host
    assert [s.split(" servers")[0] for s in shadowed([gateway, catch_all], [vs])] == [
        "Gateway istio-system/redirect-all"
    ]


def test_ports_from_the_policy_sdk_arrive_as_floats() -> None:
    gateway, vs = ours()
    gateway["spec"]["servers"][1]["port"]["number"] = 80.0
    http(vs)[0]["match"] = [{"port": 80.0}]
    http(vs).insert(0, {"match": [{"uri": {"prefix": "/.well-known/"}}], "route": [BACKEND]})
    assert len(shadowed([gateway], [vs])) == 1


# ------------------------------------------------------------------ sorting
def test_sorting_moves_only_catch_alls_last_and_keeps_the_order_of_the_rest() -> None:
    origin = model.Origin(kind="VirtualService", namespace="n", name="v")

    def exact(label: str) -> model.Route:
        return model.Route(
            origin=origin, label=label, path=model.StringMatch(kind="exact", value=label)
        )

    catch_all = model.Route(origin=origin, label="all")
    routes = [catch_all, exact("/b"), exact("/a")]
    assert [r.label for r in model.sort_routes(routes)] == ["/b", "/a", "all"]


@pytest.mark.parametrize(
    ("match", "catch_all"),
    [
        (None, True),
        ({"uri": {"prefix": "/"}}, True),
        ({"uri": {"regex": ".*"}}, True),
        ({"uri": {"regex": ".+"}}, False),
        ({"uri": {"prefix": "/x"}}, False),
        ({"uri": {"prefix": "/"}, "headers": {"h": {"exact": "v"}}}, False),
        ({"uri": {"prefix": "/"}, "method": {"exact": "GET"}}, False),
        ({"uri": {"prefix": "/"}, "queryParams": {"q": {"exact": "v"}}}, False),
    ],
)
def test_catch_all_follows_istios_is_catch_all_route(
    match: dict[str, Any] | None, catch_all: bool
) -> None:
    vs = {"metadata": {"namespace": "n", "name": "v"}, "spec": {"http": [{"match": [match]}]}}
    if match is None:
        vs["spec"] = {"http": [{}]}
    (route,) = model.virtual_service_routes(vs, port=80, gateway="n/g")
    assert route.catch_all is catch_all
