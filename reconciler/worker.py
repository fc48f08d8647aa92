"""Build the activity dependencies from Settings and run the Temporal worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Worker

from core.status import DomainStatus
from db.service import DomainAction, DomainChange, DomainService
from db.session import make_engine, make_session_factory
from reconciler import payloads as p
from reconciler.activities import ActivityDependencies, DomainActivities, ProbeSettings
from reconciler.dns import DnsSettings
from reconciler.gitops import GitOpsRepo, GitSettings, ensure_bare_remote
from reconciler.settings import Settings
from reconciler.starter import Signal, run_sync, signal_registration, timings_for
from reconciler.telemetry import Analytics
from reconciler.workflows import EnvironmentReconcileWorkflow, PortalDomainRegistrationWorkflow
from stack.automation import EnvironmentStack
from stack.config import load_stack_config
from stack.toolchain import pulumi_environment

log = logging.getLogger(__name__)

WORKFLOWS = [PortalDomainRegistrationWorkflow, EnvironmentReconcileWorkflow]


async def connect(settings: Settings, tracer_provider: TracerProvider | None = None) -> Client:
    interceptors = []
    if tracer_provider is not None:
        interceptors.append(TracingInterceptor(tracer_provider.get_tracer("portal-domains")))
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=interceptors,
    )


def domain_service(
    settings: Settings, *, hook: Callable[[DomainChange], None] | None = None
) -> DomainService:
    engine = make_engine(settings.database_url)
    return DomainService(
        make_session_factory(engine), base_domain=settings.base_domain, on_committed=hook
    )


def workflow_hook(
    settings: Settings, analytics: Analytics | None = None
) -> Callable[[DomainChange], None]:
    """After-commit hook: signal-with-start the tenant's registration workflow."""
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
        signal: Signal = "remove" if change.action == DomainAction.DISABLE else "refresh"

        async def send() -> None:
            client = await asyncio.wait_for(connect(settings), timeout=10)
            await signal_registration(
                client,
                tenant_id=str(change.tenant_id),
                environment=settings.environment,
                task_queue=settings.task_queue,
                signal=signal,
                timings=timings_for(settings.timings),
            )

        try:
            run_sync(send)
        except (RuntimeError, TimeoutError, OSError) as err:
            # The change is committed; the worker starts missing workflows when
            # it starts (resume_registrations), so this is late, not lost.
            log.warning(
                "saved, but the workflow for tenant %s was not signalled (%s at %s: %s); "
                "`portal-domains worker` resumes it when it starts",
                change.tenant_id,
                signal,
                settings.temporal_address,
                err,
            )

    return hook


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
    penv = pulumi_environment(work_dir=settings.work_dir)
    stacks: dict[str, EnvironmentStack] = {}
    repos: dict[str, GitOpsRepo] = {}

    def stack_for(environment: str) -> EnvironmentStack:
        if environment not in stacks:
            stacks[environment] = EnvironmentStack(
                penv, load_stack_config(environment), work_dir=settings.work_dir
            )
        return stacks[environment]

    def git_for(environment: str) -> GitOpsRepo:
        if environment not in repos:
            remote = settings.gitops_remote or ensure_bare_remote(settings.embedded_remote)
            repos[environment] = GitOpsRepo(
                GitSettings(remote_url=remote, worktree=settings.gitops_worktree(environment))
            )
        return repos[environment]

    deps = ActivityDependencies(
        domains=domain_service(settings),
        stack_for=stack_for,
        git_for=git_for,
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
    )
    return Runtime(settings=settings, client=client, deps=deps, activities=DomainActivities(deps))


def make_worker(runtime: Runtime, *, max_concurrent_activities: int = 16) -> Worker:
    return Worker(
        runtime.client,
        task_queue=runtime.settings.task_queue,
        workflows=WORKFLOWS,
        activities=runtime.activities.all(),
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent_activities),
        max_concurrent_activities=max_concurrent_activities,
    )


async def resume_registrations(runtime: Runtime) -> int:
    """Start the workflow of every domain that should have one and lacks it.

    Covers a hook that could not reach Temporal (the row was committed, the
    start was not): the worker repairs it at startup. Running workflows are
    left alone (USE_EXISTING).
    """
    started = 0
    for view in runtime.deps.domains.list():
        if view.status is DomainStatus.DISABLED:
            continue
        await runtime.client.start_workflow(
            PortalDomainRegistrationWorkflow.run,
            p.RegistrationInput(
                tenant_id=str(view.tenant_id),
                environment=runtime.settings.environment,
                timings=timings_for(runtime.settings.timings),
            ),
            id=p.registration_workflow_id(str(view.tenant_id)),
            task_queue=runtime.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        started += 1
    return started


async def run_until(stop: asyncio.Event, worker: Worker) -> None:
    async with worker:
        await stop.wait()
