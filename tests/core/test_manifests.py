"""Desired state rendering: golden files, determinism and the known traps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import StackConfig, parse_stack_config
from core.manifests import DesiredStateError, desired_state, render_domain
from core.records import DomainRecord
from core.status import DomainStatus
from tests.support.regen import may_rewrite

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


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("default-staging", staging()),
        (
            "challenge-disabled",
            parse_stack_config({"acmeChallengeEnabled": "false"}, environment="prod"),
        ),
    ],
)
def test_rendered_manifests_match_the_golden_file(name: str, config: StackConfig) -> None:
    rendered = _dump(render_domain(record(), config).documents())
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


def test_the_acme_challenge_route_comes_before_any_redirect() -> None:
    routes = render_domain(record(), staging()).virtual_service["spec"]["http"]
    assert routes[0]["match"] == [{"uri": {"prefix": "/.well-known/acme-challenge/"}}]
    assert all("redirect" not in r for r in routes[:1])
    gateway = render_domain(record(), staging()).gateway
    assert all("httpsRedirect" not in (s.get("tls") or {}) for s in gateway["spec"]["servers"])


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
