"""An end-to-end rig for the reconciler: every service real, on loopback.

PostgreSQL (migrated), the Temporal dev server, the Pulumi engine with a file
backend, a bare nm-kube-config remote, a DNS server, an HTTPS "ingress" with a
test CA, a PostHog capture server and an in-memory span exporter. By default
cert-manager is the stand-in loopback.cert_manager (gitops mode: nothing applies
the Certificates); tests/e2e/test_real_issuance.py passes `real=` instead: BIND,
a cluster with cert-manager's own controllers and Pebble, and the gateway's TLS
served from the Secrets cert-manager writes.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from google.protobuf.duration_pb2 import Duration
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from adapters.dns import DnsSettings
from adapters.gitops import ensure_bare_remote
from adapters.telemetry import Analytics, setup_tracing
from core.settings import REPO_ROOT, Settings
from core.status import DomainStatus
from db import migrate
from db.service import DomainService, DomainView
from loopback.cert_manager import CertManagerSimulator
from loopback.dns_server import LocalDnsServer
from loopback.tls_ingress import LocalTlsServer, TestCertificateAuthority
from reconciler import payloads as p
from reconciler.activities import ProbeSettings
from reconciler.outbox import SignalDispatcher
from reconciler.wiring import (
    Runtime,
    build_runtime,
    connect,
    domain_service,
    signal_dispatcher,
    workflow_hook,
)
from reconciler.worker import make_worker
from stack.automation import ISSUER_FILE as ISSUER_SLUG
from stack.config import load_stack_config
from tests.support.capture_server import CaptureServer
from tests.support.timings import TEST_TIMINGS_SETTING

ISSUER_FILE = f"{ISSUER_SLUG}.yaml"


class TenantDns(Protocol):
    """The tenants' DNS as the tests change it: loopback.dns_server or BIND (loopback.acme)."""

    def set_cname(self, name: str, target: str) -> None: ...

    def remove(self, name: str) -> None: ...


@dataclass(frozen=True, kw_only=True)
class RealIssuance:
    """What replaces the stand-ins when cert-manager runs for real (see the module doc)."""

    dns: TenantDns
    dns_settings: DnsSettings
    probe: ProbeSettings
    stack_config_dir: Path


@dataclass
class Harness:
    tmp: Path
    env: dict[str, str]
    settings: Settings
    service: DomainService
    dns: TenantDns
    tls: LocalTlsServer
    capture: CaptureServer
    spans: InMemorySpanExporter
    analytics: Analytics
    runtime: Runtime
    remote: str
    environment: str = "staging"
    manifest_root: str = load_stack_config("staging").manifest_root

    def request(
        self, domain: str, *, cname_ok: bool = True, tenant: uuid.UUID | None = None
    ) -> DomainView:
        tenant = tenant or uuid.uuid4()
        view = self.service.request(tenant, domain, "operator:test")
        self.dns.set_cname(domain, view.canonical_host if cname_ok else "old.hosting.example.net")
        return view

    async def wait_status(
        self, tenant: uuid.UUID, wanted: set[DomainStatus], timeout: float = 180
    ) -> DomainView:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = await asyncio.to_thread(self.service.get, tenant)
            if view.status in wanted:
                return view
            await asyncio.sleep(0.2)
        stage = await self.runtime.client.get_workflow_handle(
            p.registration_workflow_id(str(tenant))
        ).query("stage")
        try:
            env = await self.runtime.client.get_workflow_handle(
                p.reconcile_workflow_id(self.environment)
            ).query("status")
        except RPCError as err:
            env = str(err)
        raise AssertionError(
            f"{tenant} stayed {view.status}: {view.status_message} "
            f"(workflow stage {stage!r}; environment workflow {env}; "
            f"{self.runtime.activities.reconcile_runs} reconcile runs)"
        )

    def all_remote_files(self) -> dict[str, str]:
        root = self.manifest_root
        names = _git(self.remote, "ls-tree", "--name-only", f"main:{root}").split()
        return {n: _git(self.remote, "show", f"main:{root}/{n}") for n in names}

    def remote_files(self) -> dict[str, str]:
        """The tenants' files (the ClusterIssuer's aside: see issuer_file)."""
        return {n: t for n, t in self.all_remote_files().items() if n != ISSUER_FILE}

    def issuer_file(self) -> str | None:
        """The environment's cluster-issuer.yaml in the remote, if published."""
        return self.all_remote_files().get(ISSUER_FILE)

    def remote_log(self) -> list[str]:
        return _git(self.remote, "log", "--format=%s", "main").splitlines()

    async def wait_remote(self, predicate: object, timeout: float = 120) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = await asyncio.to_thread(self.remote_files)
            if predicate(files):  # type: ignore[operator]
                return files
            await asyncio.sleep(0.3)
        raise AssertionError(f"remote never matched; it has {sorted(files)}")


def _git(remote: str, *args: str) -> str:
    proc = subprocess.run(
        ["git", "--git-dir", remote, *args], capture_output=True, text=True, check=False
    )
    return proc.stdout


async def create_namespace(address: str) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    client = await Client.connect(address)
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    deadline = time.monotonic() + 30
    while True:  # registration is asynchronous on the server
        try:
            await (await Client.connect(address, namespace=name)).count_workflows()
            return name
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def harness_env(
    tmp: Path,
    *,
    database_url: str,
    temporal_address: str,
    remote: str,
    dns_port: int,
    probe: ProbeSettings,
    capture_url: str,
) -> dict[str, str]:
    return {
        "PORTAL_DOMAINS_HOME": str(tmp / "home"),
        "PORTAL_DOMAINS_DATABASE_URL": database_url,
        "PORTAL_DOMAINS_TEMPORAL_ADDRESS": temporal_address,
        "PORTAL_DOMAINS_TASK_QUEUE": f"test-{uuid.uuid4().hex[:10]}",
        "PORTAL_DOMAINS_TIMINGS": TEST_TIMINGS_SETTING,
        "PORTAL_DOMAINS_DEBOUNCE_SECONDS": "1",
        "PORTAL_DOMAINS_HEARTBEAT_TIMEOUT_SECONDS": "5",
        "PORTAL_DOMAINS_GITOPS_REMOTE": remote,
        "PORTAL_DOMAINS_DNS_NAMESERVERS": "127.0.0.1",
        "PORTAL_DOMAINS_DNS_PORT": str(dns_port),
        "PORTAL_DOMAINS_PROBE_PORT": str(probe.port),
        "PORTAL_DOMAINS_PROBE_CONNECT_ADDRESS": probe.connect_address or "",
        "PORTAL_DOMAINS_PROBE_CA_BUNDLE": probe.ca_bundle or "",
        "PORTAL_DOMAINS_POSTHOG_API_KEY": "phc_test_key",
        "PORTAL_DOMAINS_POSTHOG_HOST": capture_url,
        "PULUMI_CONFIG_PASSPHRASE": "test",
    }


@asynccontextmanager
async def reconciler_harness(
    tmp: Path,
    *,
    database_url: str,
    temporal_address: str,
    run_worker: bool = True,
    extra_env: Mapping[str, str] | None = None,
    real: RealIssuance | None = None,
) -> AsyncIterator[Harness]:
    migrate.upgrade(database_url)
    # A namespace of its own: the environment workflow's id is fixed per
    # environment (portal-domains-reconcile-staging), and one left idle by an
    # earlier test on its task queue must not swallow this test's requests.
    namespace = await create_namespace(temporal_address)
    remote = ensure_bare_remote(tmp / "nm-kube-config.git")
    environment = (extra_env or {}).get("PORTAL_DOMAINS_ENVIRONMENT", "staging")
    stack_dir = real.stack_config_dir if real else REPO_ROOT
    manifest_root = load_stack_config(environment, root=stack_dir).manifest_root
    ca = TestCertificateAuthority(tmp / "ca")
    with (
        LocalDnsServer() as local_dns,
        LocalTlsServer(ca) as tls,
        CaptureServer() as capture,
        ExitStack() as standins,
    ):
        if real is None:
            standins.enter_context(
                CertManagerSimulator(
                    remote=remote, manifest_root=manifest_root, tls=tls, interval_seconds=0.2
                )
            )
        dns: TenantDns = real.dns if real else local_dns
        dns_settings = real.dns_settings if real else local_dns.settings
        probe = (
            real.probe
            if real
            else ProbeSettings(
                port=tls.port, connect_address="127.0.0.1", ca_bundle=str(ca.ca_pem_path)
            )
        )
        env = harness_env(
            tmp,
            database_url=database_url,
            temporal_address=temporal_address,
            remote=remote,
            dns_port=dns_settings.port,
            probe=probe,
            capture_url=capture.url,
        )
        env["PORTAL_DOMAINS_TEMPORAL_NAMESPACE"] = namespace
        if real is not None:
            env["PORTAL_DOMAINS_STACK_CONFIG_DIR"] = str(real.stack_config_dir)
        env.update(extra_env or {})
        settings = Settings.from_env(env)
        spans = InMemorySpanExporter()
        provider = setup_tracing(
            service_name="portal-domains-test", otlp_endpoint=None, exporter=spans
        )
        analytics = Analytics(settings.posthog_api_key, settings.posthog_host, flush_at=1)
        client = await connect(settings, provider)
        runtime = build_runtime(
            settings,
            client,
            analytics=analytics,
            tracer_provider=provider,
            probe=probe,
            dns=dns_settings,
        )
        dispatchers: list[SignalDispatcher] = []  # wakes the outbox dispatcher below

        def wake() -> None:
            for dispatcher in dispatchers:
                dispatcher.nudge()

        service = domain_service(
            settings, hook=workflow_hook(settings, analytics, deliver=wake), outbox=True
        )
        dispatchers.append(signal_dispatcher(settings, service, client=client))
        harness = Harness(
            tmp=tmp,
            env=env,
            settings=settings,
            service=service,
            dns=dns,
            tls=tls,
            capture=capture,
            spans=spans,
            analytics=analytics,
            runtime=runtime,
            remote=remote,
            environment=environment,
            manifest_root=manifest_root,
        )
        try:
            if run_worker:
                stop = asyncio.Event()
                async with make_worker(runtime):
                    delivering = asyncio.create_task(dispatchers[0].run(stop))
                    try:
                        yield harness
                    finally:
                        stop.set()
                        await delivering
            else:
                yield harness
        finally:
            analytics.shutdown()
            provider.shutdown()


def deletion_cap_zero(tmp_path: Path) -> dict[str, str]:
    """extra_env for a harness whose staging stack holds every removal (deletionCap 0)."""
    stacks = tmp_path / "stacks"
    stacks.mkdir(exist_ok=True)
    (stacks / "Pulumi.staging.yaml").write_text("config:\n  portal-domains:deletionCap: '0'\n")
    return {"PORTAL_DOMAINS_STACK_CONFIG_DIR": str(stacks)}


async def held_removal(h: Harness, domain: str) -> DomainView:
    """Deploy `domain`, disable it, and wait until the worker reports its removal held."""
    view = h.request(domain)
    await h.wait_status(view.tenant_id, {DomainStatus.ACTIVE})
    await asyncio.to_thread(h.service.disable, view.tenant_id, "operator:test")
    deadline = time.monotonic() + 120
    while "an operator must confirm" not in (
        (await asyncio.to_thread(h.service.get, view.tenant_id)).status_message or ""
    ):
        assert time.monotonic() < deadline, "the removal was never reported as held"
        await asyncio.sleep(0.3)
    # Held: still in the stack and in nm-kube-config.
    assert list(h.remote_files()) == [f"{view.canonical_prefix}.yaml"]
    return view
