"""`portal-domains demo --cluster`: the main job with real certificate issuance, on loopback.

Like `demo`, plus everything that decides whether a vanity domain really works:
a Kubernetes API server (etcd + kube-apiserver + the garbage collector) that
Pulumi applies the objects to (cluster mode), cert-manager's own controllers,
Pebble (Let's Encrypt's ACME test server) and BIND 9 serving the sample
tenants' zones and our ACME delegation zone. The environment issues by DNS-01
delegation: each sample tenant creates its portal CNAME and its
`_acme-challenge` CNAME, cert-manager writes the TXT record into our zone by
RFC 2136, Pebble validates it, and the HTTPS probe checks the certificate
cert-manager stored, served by SNI from its Secret.

The one stand-in is Istio's ingress gateway (loopback.secret_gateway): Envoy
cannot run here. Every run starts from nothing (a fresh cluster, database,
Pulumi state and nm-kube-config under $PORTAL_DOMAINS_HOME/demo-cluster), so it
takes the same ~2 minutes each time; cert-manager waits a fixed 60 s after its
DNS-01 self-check before asking the CA to validate.

Needs scripts/setup-kubernetes.sh and scripts/setup-certificates.sh (setup.sh
runs both).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import yaml
from cryptography import x509

from adapters.gitops import ensure_bare_remote
from adapters.kube import KubeClient
from core.manifests import resource_name
from core.settings import Settings
from db import migrate
from loopback.acme import (
    dns01_stack_config,
    prepare_for_issuance,
    running_cert_manager,
    running_dns_server,
    running_pebble,
)
from loopback.cluster import running_cluster
from loopback.demo import (
    SAMPLES,
    WRONG_TARGET,
    DemoReport,
    demo_report,
    demo_runtime,
    sync_now,
    wait_settled,
)
from loopback.secret_gateway import SecretGateway
from loopback.temporal import temporal_dev_server
from reconciler.activities import ProbeSettings
from reconciler.timings import FAST, as_setting
from reconciler.wiring import domain_service
from reconciler.worker import make_worker, resume_registrations
from stack.config import load_stack_config

Progress = Callable[[str], None]

ACME_ZONE = "acme-challenges.portal-domains.test"
GATEWAY_NAMESPACE = "istio-system"
ISSUER = "pebble-dns01"
# The demo's waits, with room for cert-manager's fixed 60 s after its self-check.
TIMINGS = replace(FAST, cert_timeout=300, https_timeout=60)


def _zone_of(domain: str) -> str:
    return domain.split(".", 1)[1]


_ENVIRONMENT = "staging"


async def run_cluster_demo(base: Settings, progress: Progress) -> DemoReport:
    started = time.monotonic()
    work = base.work_dir / "demo-cluster"
    # From nothing every time: the cluster is fresh, so old rows and stack state would lie.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    remote = ensure_bare_remote(work / "nm-kube-config.git")
    settings = replace(
        base,
        work_dir=work,
        database_url=f"sqlite:///{work / 'portal-domains.db'}",
        environment=_ENVIRONMENT,
        timings=as_setting(TIMINGS),
        debounce_seconds=1.0,
        gitops_remote=remote,
        stack_config_dir=work / "stacks",
    )
    migrate.upgrade(settings.database_url)
    zones: dict[str, list[str]] = {_zone_of(s.domain): [] for s in SAMPLES}

    with ExitStack() as stack:
        progress("starting etcd, kube-apiserver and kube-controller-manager (loopback)")
        cluster = stack.enter_context(running_cluster(work / "cluster"))
        dns = stack.enter_context(
            running_dns_server(work / "dns", tenant_zones=zones, acme_zone=ACME_ZONE)
        )
        progress(f"BIND 9: {dns.nameserver}, zones {', '.join(zones)} and {ACME_ZONE}")
        pebble = stack.enter_context(running_pebble(work / "pebble", dns_server=dns))
        progress(f"Pebble (ACME test CA): {pebble.directory_url}")
        stack.enter_context(running_cert_manager(work / "cert-manager", cluster, dns_server=dns))
        progress("cert-manager controllers: running")
        root_pem = prepare_for_issuance(cluster, dns_server=dns, pebble=pebble, folder=work)
        kube = KubeClient.from_kubeconfig(cluster.kubeconfig)
        gateway = stack.enter_context(
            SecretGateway(kube, namespace=GATEWAY_NAMESPACE, folder=work / "gateway")
        )
        settings.stack_config_dir.mkdir(parents=True, exist_ok=True)
        stack_file = settings.stack_config_dir / f"Pulumi.{_ENVIRONMENT}.yaml"
        document = dns01_stack_config(
            issuer=ISSUER,
            kubeconfig=cluster.kubeconfig,
            pebble=pebble,
            dns_server=dns,
            acme_zone=ACME_ZONE,
        )
        stack_file.write_text(yaml.safe_dump(document))
        config = load_stack_config(_ENVIRONMENT, root=settings.stack_config_dir)
        address = stack.enter_context(temporal_dev_server(work))
        progress(
            f"temporal dev server: {address}; gateway TLS (stand-in): 127.0.0.1:{gateway.port}"
        )
        settings = replace(settings, temporal_address=address)
        runtime = await demo_runtime(
            settings,
            probe=ProbeSettings(
                port=gateway.port, connect_address="127.0.0.1", ca_bundle=str(root_pem)
            ),
            dns=dns.settings(),
        )
        client, analytics = runtime.client, runtime.deps.analytics
        service = domain_service(settings)
        async with make_worker(runtime):
            for sample in SAMPLES:
                view = await asyncio.to_thread(
                    service.request, uuid.UUID(sample.tenant_id), sample.domain, "operator:demo"
                )
                delegation = config.challenge_delegation(
                    domain=view.domain, prefix=view.canonical_prefix
                )
                if delegation is None:  # the stack file above says dns01
                    raise RuntimeError("the demo environment does not issue by DNS-01")
                target = view.canonical_host if sample.cname_ok else WRONG_TARGET
                dns.set_cname(sample.domain, target)
                dns.set_cname(delegation.name, delegation.target)
                progress(
                    f"requested {sample.domain} for tenant {view.canonical_prefix}; DNS: "
                    f"{sample.domain} CNAME {target}, {delegation.name} CNAME {delegation.target}"
                )
            await resume_registrations(runtime)
            await wait_settled(service, progress, timeout=420)
            progress("running one more environment reconcile (update-with-start)")
            outcome = await sync_now(client, settings, _ENVIRONMENT)
        analytics.shutdown()
        views = service.list()
        certificates = [
            _certificate_summary(kube, config.certificate_namespace, v.canonical_prefix)
            for v in views
            if v.status.value == "active"
        ]

    return demo_report(
        views,
        remote=remote,
        manifest_root=config.manifest_root,
        outcome=outcome,
        started=started,
        certificates=[c for c in certificates if c],
    )


def _certificate_summary(kube: KubeClient, namespace: str, prefix: str) -> dict[str, Any]:
    """Subject, issuer, names and validity of the certificate cert-manager stored."""
    secret = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{resource_name(prefix)}-tls")
    if not secret or "tls.crt" not in (secret.get("data") or {}):
        return {}
    leaf = x509.load_pem_x509_certificates(base64.b64decode(secret["data"]["tls.crt"]))[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {
        "secret": f"{namespace}/{secret['metadata']['name']}",
        "subject": leaf.subject.rfc4514_string(),
        "issuer": leaf.issuer.rfc4514_string(),
        "dns_names": names.get_values_for_type(x509.DNSName),
        "not_before": leaf.not_valid_before_utc.isoformat(),
        "not_after": leaf.not_valid_after_utc.isoformat(),
    }
