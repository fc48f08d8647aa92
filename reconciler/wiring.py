"""The composition root: services, stacks, Git and clients, built once per process.

Entry points (the worker, the CLI, the API server, the demo) build what they
need here from Settings and pass it down; nothing else constructs a
DomainService, an EnvironmentStack or a GitOpsRepo.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from adapters.dns import DnsSettings
from adapters.gitops import GitOpsRepo, GitSettings, ensure_bare_remote
from adapters.kube import KubeClient
from adapters.telemetry import Analytics
from core.settings import Settings
from db.run_records import DbRunRecords
from db.service import DomainAction, DomainChange, DomainService
from db.session import make_engine, make_session_factory
from reconciler.activities import ActivityDependencies, DomainActivities, ProbeSettings
from reconciler.environment_reconcile import kube_client_for
from reconciler.outbox import SignalDispatcher
from reconciler.timings import timings_for
from stack.config import load_stack_config
from stack.shards import EnvironmentStacks
from stack.toolchain import pulumi_environment

log = logging.getLogger(__name__)


# Set once this process has opened a Temporal client (see temporal_client_opened).
_client_opened = False


def temporal_client_opened() -> bool:
    """True once this process opened a Temporal client.

    The client's Rust core keeps native threads that can call into Python while the
    interpreter finalizes, which aborts a short-lived process at exit
    ("PyGILState_Release ... finalizing", temporalio/sdk-python#300). The CLI's entry
    point asks this and then ends the process without interpreter teardown.
    """
    return _client_opened


async def connect(settings: Settings, tracer_provider: TracerProvider | None = None) -> Client:
    global _client_opened
    _client_opened = True
    interceptors = []
    if tracer_provider is not None:
        interceptors.append(TracingInterceptor(tracer_provider.get_tracer("portal-domains")))
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=interceptors,
    )


def domain_service(
    settings: Settings,
    *,
    hook: Callable[[DomainChange], None] | None = None,
    outbox: bool = False,
) -> DomainService:
    engine = make_engine(settings.database_url)
    config = load_stack_config(settings.environment, root=settings.stack_config_dir)
    return DomainService(
        make_session_factory(engine),
        base_domain=settings.base_domain,
        on_committed=hook,
        challenge_zone=config.acme_dns01_zone if config.acme_solver == "dns01" else None,
        outbox=outbox,
    )


def gitops_remote(settings: Settings) -> str:
    """The nm-kube-config remote: the configured one, or the embedded local bare repo."""
    return settings.gitops_remote or ensure_bare_remote(settings.embedded_remote)


def environment_stack(settings: Settings, environment: str) -> EnvironmentStacks:
    """The environment's stacks, one per shard (core.shards; one by default).

    With a shared Pulumi backend the run records are shared too (in the rows'
    database), so any worker may skip an unchanged shard; with the embedded file
    backend they stay beside this host's workspaces.
    """
    penv = pulumi_environment(work_dir=settings.work_dir, environment=environment)
    config = load_stack_config(environment, root=settings.stack_config_dir)
    records = (
        None
        if penv.state_is_private
        else DbRunRecords(make_session_factory(make_engine(settings.database_url)))
    )
    return EnvironmentStacks(penv, config, work_dir=settings.work_dir, run_records=records)


def gitops_repo(settings: Settings, environment: str) -> GitOpsRepo:
    """nm-kube-config for `environment`: main, or its review branch (`gitopsReview`)."""
    config = load_stack_config(environment, root=settings.stack_config_dir)
    return GitOpsRepo(
        GitSettings(
            remote_url=gitops_remote(settings),
            worktree=settings.gitops_worktree(environment),
            review_branch=config.gitops_review_branch,
            token_file=settings.gitops_token_file,
            token_username=settings.gitops_username,
            ssh_key=settings.gitops_ssh_key,
            ssh_known_hosts=settings.gitops_ssh_known_hosts,
        )
    )


def workflow_hook(
    settings: Settings,
    analytics: Analytics | None = None,
    *,
    deliver: Callable[[], None] | None = None,
) -> Callable[[DomainChange], None]:
    """After-commit hook of a service with `outbox=True`.

    The change already queued its workflow signal in its own transaction; the hook
    sends the `portal_domain.requested` event and calls `deliver` (e.g. wakes the
    process's dispatcher). It never talks to Temporal, so a request never waits for it.
    """
    events = analytics or Analytics(settings.posthog_api_key, settings.posthog_host)

    def hook(change: DomainChange) -> None:
        if change.action == DomainAction.RECORD_STATUS:
            return  # the workflow wrote it; telling it again would only interrupt it
        if change.action in (DomainAction.REQUEST, DomainAction.REPLACE):
            events.capture(
                "portal_domain.requested",
                distinct_id=str(change.tenant_id),
                properties={
                    "tenant_id": str(change.tenant_id),
                    "domain": change.domain,
                    "env": settings.environment,
                    "action": change.action.value,
                },
            )
        if deliver is not None:
            deliver()

    return hook


def signal_dispatcher(
    settings: Settings,
    service: DomainService,
    *,
    client: Client | None = None,
    connect_timeout: float = 3.0,
    rpc_timeout: float = 5.0,
) -> SignalDispatcher:
    """The outbox's dispatcher for this process: reuses `client` when it has one."""

    async def client_now() -> Client:
        return client if client is not None else await connect(settings)

    return SignalDispatcher(
        service,
        client_now,
        environment=settings.environment,
        task_queue=settings.task_queue,
        timings=timings_for(settings.timings),
        connect_timeout=connect_timeout,
        rpc_timeout=rpc_timeout,
    )


@dataclass
class Runtime:
    """Everything a worker process holds; built once per process."""

    settings: Settings
    client: Client
    deps: ActivityDependencies
    activities: DomainActivities


def build_runtime(
    settings: Settings,
    client: Client,
    *,
    analytics: Analytics,
    tracer_provider: TracerProvider,
    probe: ProbeSettings | None = None,
    dns: DnsSettings | None = None,
) -> Runtime:
    stacks: dict[str, EnvironmentStacks] = {}
    repos: dict[str, GitOpsRepo] = {}
    kubes: dict[str, KubeClient | None] = {}

    def stack_for(environment: str) -> EnvironmentStacks:
        if environment not in stacks:
            stacks[environment] = environment_stack(settings, environment)
        return stacks[environment]

    def git_for(environment: str) -> GitOpsRepo:
        if environment not in repos:
            repos[environment] = gitops_repo(settings, environment)
        return repos[environment]

    def kube_for(environment: str) -> KubeClient | None:
        if environment not in kubes:
            kubes[environment] = kube_client_for(stack_for(environment))
        return kubes[environment]

    deps = ActivityDependencies(
        domains=domain_service(settings),
        stack_for=stack_for,
        git_for=git_for,
        kube_for=kube_for,
        dns=dns or DnsSettings(nameservers=settings.dns_nameservers, port=settings.dns_port),
        probe=probe
        or ProbeSettings(
            port=settings.probe_port,
            connect_address=settings.probe_connect_address,
            ca_bundle=settings.probe_ca_bundle,
        ),
        analytics=analytics,
        tracer=tracer_provider.get_tracer("portal-domains"),
        client=client,
        task_queue=settings.task_queue,
        debounce_seconds=settings.debounce_seconds,
        heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds,
        full_pass_every=timedelta(minutes=settings.full_pass_minutes),
    )
    return Runtime(settings=settings, client=client, deps=deps, activities=DomainActivities(deps))
