"""The registration workflow with a real certificate: request -> active -> removed, no stand-in
for cert-manager, ACME or DNS.

Real, on loopback: PostgreSQL, the Temporal dev server and worker, Pulumi in cluster mode
against kube-apiserver + etcd (loopback/cluster.py), BIND 9 serving the tenants' zones
and our ACME delegation zone, Pebble (Let's Encrypt's ACME test server) and cert-manager's
own controllers (loopback/acme.py). The stack's ClusterIssuer solves DNS-01 through the
tenant's `_acme-challenge` CNAME into our zone (acmeSolver: dns01).

The one stand-in is the ingress gateway's TLS side (loopback/secret_gateway.py): Envoy
cannot run here, so a loopback HTTPS server serves, by SNI, the Secret each Gateway's
credentialName names, as Istio's gateway does. The HTTPS probe therefore checks the
certificate cert-manager wrote, chained to Pebble's root.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from adapters.kube import KubeClient
from core.manifests import resource_name
from core.status import DomainStatus as S
from loopback.acme import (
    DnsServer,
    PebbleServer,
    dns01_stack_config,
    prepare_for_issuance,
    running_cert_manager,
    running_dns_server,
    running_pebble,
)
from loopback.cluster import ClusterInfo, running_cluster
from loopback.secret_gateway import SecretGateway
from reconciler.activities import ProbeSettings
from reconciler.timings import as_setting
from tests.support.harness import Harness, RealIssuance, reconciler_harness
from tests.support.timings import TEST_TIMINGS

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.pulumi,
    pytest.mark.postgres,
    pytest.mark.temporal,
]

ACME_ZONE = "acme-challenges.portal-domains.test"
# Tenant zones, served by BIND only (it answers for the root zone itself, so nothing
# here is ever looked up on the Internet). Records are added by each test.
TENANT_ZONES: dict[str, list[str]] = {"acme-e2e.com": [], "globex-e2e.com": []}
GATEWAY_NAMESPACE = "istio-system"
CERT_MANAGER = "/apis/cert-manager.io/v1"
ISTIO = "/apis/networking.istio.io/v1"
# cert-manager waits a fixed 60 s after its DNS-01 self-check before it asks the CA to
# validate, so issuing takes a little over a minute.
TIMINGS = as_setting(
    dataclasses.replace(TEST_TIMINGS, cert_timeout=300, cert_poll_interval=1.0, https_timeout=60)
)


@dataclass(frozen=True)
class World:
    cluster: ClusterInfo
    dns: DnsServer
    pebble: PebbleServer
    gateway: SecretGateway
    root_pem: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("real-issuance")
    with ExitStack() as stack:
        cluster = stack.enter_context(running_cluster(base / "cluster"))
        dns = stack.enter_context(
            running_dns_server(base / "dns", tenant_zones=TENANT_ZONES, acme_zone=ACME_ZONE)
        )
        pebble = stack.enter_context(running_pebble(base / "pebble", dns_server=dns))
        stack.enter_context(running_cert_manager(base / "cert-manager", cluster, dns_server=dns))
        root_pem = prepare_for_issuance(cluster, dns_server=dns, pebble=pebble, folder=base)
        gateway = SecretGateway(
            KubeClient.from_kubeconfig(cluster.kubeconfig),
            namespace=GATEWAY_NAMESPACE,
            folder=base / "gateway",
            interval_seconds=0.3,
        )
        stack.enter_context(gateway)
        yield World(cluster, dns, pebble, gateway, root_pem)


def stack_config_dir(world: World, tmp: Path) -> Path:
    """A Pulumi.staging.yaml for cluster mode issuing from Pebble by DNS-01 delegation."""
    folder = tmp / "stacks"
    folder.mkdir()
    document = dns01_stack_config(
        # The ClusterIssuer is cluster-scoped and the tests share the cluster: one each.
        issuer=f"pebble-dns01-{uuid.uuid4().hex[:6]}",
        kubeconfig=world.cluster.kubeconfig,
        pebble=world.pebble,
        dns_server=world.dns,
        acme_zone=ACME_ZONE,
    )
    (folder / "Pulumi.staging.yaml").write_text(yaml.safe_dump(document))
    return folder


def harness(
    world: World, tmp: Path, postgres_url: str, temporal_address: str
) -> AbstractAsyncContextManager[Harness]:
    """The reconciler rig with the real services of `world` in place of the stand-ins."""
    return reconciler_harness(
        tmp,
        database_url=postgres_url,
        temporal_address=temporal_address,
        extra_env={"PORTAL_DOMAINS_TIMINGS": TIMINGS},
        real=RealIssuance(
            dns=world.dns,
            dns_settings=world.dns.settings(),
            probe=ProbeSettings(
                port=world.gateway.port, connect_address="127.0.0.1", ca_bundle=str(world.root_pem)
            ),
            stack_config_dir=stack_config_dir(world, tmp),
        ),
    )


def request(h: Harness, domain: str, *, delegate: bool = True) -> tuple[uuid.UUID, str]:
    """The tenant asks for `domain` and creates the records the guidance shows."""
    view = h.service.request(uuid.uuid4(), domain, "operator:test")
    h.dns.set_cname(domain, view.canonical_host)
    if delegate:
        h.dns.set_cname(f"_acme-challenge.{domain}", f"{view.canonical_prefix}.{ACME_ZONE}")
    return view.tenant_id, view.canonical_prefix


def stored(world: World, path: str) -> dict[str, object] | None:
    found: dict[str, object] | None = KubeClient.from_kubeconfig(world.cluster.kubeconfig).get(path)
    return found


def test_a_domain_goes_active_with_a_certificate_from_pebble_and_removal_removes_it(
    world: World,
    tmp_path: Path,
    postgres_url: str,
    temporal_address: str,
    record_property: Callable[[str, object], None],
) -> None:
    domain = "portal.acme-e2e.com"

    async def scenario() -> float:
        async with harness(world, tmp_path, postgres_url, temporal_address) as h:
            started = time.monotonic()
            tenant, prefix = await asyncio.to_thread(request, h, domain)
            active = await h.wait_status(tenant, {S.ACTIVE}, timeout=300)
            took = time.monotonic() - started
            assert f"https://{domain}/" in active.status_message

            # The certificate the gateway served is the one cert-manager got from Pebble.
            name = resource_name(prefix)
            secret = stored(world, f"/api/v1/namespaces/{GATEWAY_NAMESPACE}/secrets/{name}-tls")
            assert secret is not None
            data = secret["data"]
            assert isinstance(data, dict)
            chain = base64.b64decode(data["tls.crt"])
            leaf = x509.load_pem_x509_certificates(chain)[0]
            # Kept for a human (`openssl x509 -noout -text -in ...`); ignored by Git.
            artifacts = Path(__file__).resolve().parents[2] / "test-artifacts" / "issuance"
            artifacts.mkdir(parents=True, exist_ok=True)
            (artifacts / f"{domain}.pem").write_bytes(chain)
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.DNSName) == [domain]
            assert leaf.issuer != world.pebble.issuing_root().subject  # an intermediate signed it
            assert domain in world.gateway.served_hosts()
            # The TXT record went into our zone, where the tenant's CNAME points.
            assert f"adding an RR at '{prefix}.{ACME_ZONE}' TXT" in world.dns.log.read_text()

            # The domain's file in nm-kube-config carries the DNS-01 issuer.
            files = h.remote_files()
            assert "kind: Certificate" in files[f"{prefix}.yaml"]
            assert "cnameStrategy: Follow" in (h.issuer_file() or "")

            await asyncio.to_thread(h.service.disable, tenant, "operator:test")
            await h.wait_status(tenant, {S.DISABLED})
            for path in (
                f"{CERT_MANAGER}/namespaces/{GATEWAY_NAMESPACE}/certificates/{name}",
                f"{ISTIO}/namespaces/{GATEWAY_NAMESPACE}/gateways/{name}",
                f"{ISTIO}/namespaces/msp/virtualservices/{name}",
            ):
                await wait_gone(world, path)
            await h.wait_remote(lambda f: f"{prefix}.yaml" not in f)
            # cert-manager owns the Secret (--enable-certificate-owner-ref); the
            # garbage collector removes it with the Certificate.
            await wait_gone(world, f"/api/v1/namespaces/{GATEWAY_NAMESPACE}/secrets/{name}-tls")
            world.gateway.sync_once()
            assert domain not in world.gateway.served_hosts()
            return took

    took = asyncio.run(scenario())
    record_property("request_to_active_seconds", round(took, 1))
    sys.stderr.write(f"\nrequest -> active with a real certificate: {took:.1f}s\n")


def test_a_challenge_cname_removed_after_verification_fails_the_certificate_fast(
    world: World, tmp_path: Path, postgres_url: str, temporal_address: str
) -> None:
    domain = "portal.globex-e2e.com"

    async def scenario() -> None:
        async with harness(world, tmp_path, postgres_url, temporal_address) as h:
            tenant, _ = await asyncio.to_thread(request, h, domain)
            await h.wait_status(tenant, {S.PENDING_CERTIFICATE}, timeout=60)
            # Verified, then the tenant deletes the delegation record before cert-manager
            # gets to it: cert-manager writes the TXT into the tenant's zone, which our
            # key may not update.
            await asyncio.to_thread(h.dns.remove, f"_acme-challenge.{domain}")
            started = time.monotonic()
            failed = await h.wait_status(tenant, {S.CERTIFICATE_FAILED}, timeout=120)
            # Far sooner than cert_timeout (300 s here, an hour in production).
            assert time.monotonic() - started < 100
            assert "DNS update failed" in failed.status_message
            assert f"_acme-challenge.{domain} is a CNAME to" in failed.status_message

    asyncio.run(scenario())


async def wait_gone(world: World, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(stored, world, path) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} is still there after {timeout:.0f}s")
        await asyncio.sleep(0.5)
