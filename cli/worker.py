"""`worker` (the Temporal worker) and `demo` (the main job on embedded defaults)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from dataclasses import asdict

from adapters.telemetry import Analytics, setup_tracing
from cli import output
from cli.exit_codes import CliError, ExitCode
from core.settings import Settings
from loopback.acme import AcmeError
from loopback.cluster import ClusterError
from loopback.cluster_demo import run_cluster_demo
from loopback.demo import run_demo
from reconciler.wiring import build_runtime, connect, signal_dispatcher
from reconciler.worker import make_worker, resume_registrations


async def _serve(settings: Settings) -> None:
    tracer_provider = setup_tracing(
        service_name="portal-domains-worker", otlp_endpoint=settings.otlp_endpoint
    )
    analytics = Analytics(settings.posthog_api_key, settings.posthog_host)
    try:
        client = await connect(settings, tracer_provider)
    except RuntimeError as err:
        raise CliError(
            f"cannot reach Temporal at {settings.temporal_address}: {err}", ExitCode.UNAVAILABLE
        ) from err
    runtime = build_runtime(settings, client, analytics=analytics, tracer_provider=tracer_provider)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The outbox's signals (queued by the API and the CLI) go out through this
    # process's client as well, so a change reaches its workflow even when no API
    # server runs.
    dispatcher = signal_dispatcher(settings, runtime.deps.domains, client=client)
    async with make_worker(
        runtime, max_concurrent_activities=runtime.settings.worker_max_activities
    ):
        resumed = await resume_registrations(runtime)
        delivering = asyncio.create_task(dispatcher.run(stop))
        output.progress(
            f"worker: task queue {settings.task_queue} on {settings.temporal_address} "
            f"({settings.environment}); {resumed} registration workflow(s) ensured; "
            "delivering queued workflow signals; SIGTERM stops it cleanly"
        )
        await stop.wait()
        output.progress("worker: stopping (finishing in-flight tasks)")
        await delivering
    analytics.shutdown()
    tracer_provider.shutdown()


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if settings.gitops_remote is None and not args.embedded:
        # A production worker must never publish to the demo's local bare repo
        # because a variable was forgotten.
        raise CliError(
            "PORTAL_DOMAINS_GITOPS_REMOTE is not set: set it to the nm-kube-config remote, "
            f"or pass --embedded to publish to the local bare repo {settings.embedded_remote}",
            ExitCode.INVALID_INPUT,
        )
    asyncio.run(_serve(settings))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    progress = (lambda _line: None) if args.json else output.progress
    try:
        if args.cluster:
            report = asyncio.run(run_cluster_demo(settings, progress))
        else:
            report = asyncio.run(run_demo(settings, progress))
    except TimeoutError as err:
        raise CliError(str(err)) from err
    except (ClusterError, AcmeError) as err:
        raise CliError(str(err), ExitCode.UNAVAILABLE) from err
    if args.json:
        output.emit_json(asdict(report))
        return 0
    output.line()
    output.table(
        ["TENANT", "DOMAIN", "STATUS", "MESSAGE"],
        [[d["tenant"], d["domain"], d["status"], d["message"]] for d in report.domains],
    )
    output.line()
    output.line(f"nm-kube-config: {report.remote}")
    output.line(f"  {report.manifest_root}/: {', '.join(report.files) or '(no files)'}")
    output.line("  recent commits:")
    for commit in report.commits[:5]:
        output.line(f"    {commit}")
    for cert in report.certificates:
        subject = cert["subject"] or "(empty; the names are in the SAN)"
        output.line(
            f"certificate {cert['secret']}: subject {subject}, issuer {cert['issuer']}, "
            f"DNS {', '.join(cert['dns_names'])}, valid until {cert['not_after']}"
        )
    output.line(f"last reconcile: {report.reconcile['message']}")
    again = (
        "each run starts from a fresh cluster"
        if args.cluster
        else "run it again: it converges and changes nothing"
    )
    output.line(f"done in {report.seconds}s; {again}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker",
        help="run the Temporal worker (workflows + activities)",
        description="Run the Temporal worker for PORTAL_DOMAINS_ENVIRONMENT. Address, namespace "
        "and task queue come from PORTAL_DOMAINS_TEMPORAL_ADDRESS / _NAMESPACE / _TASK_QUEUE.",
    )
    worker.add_argument(
        "--embedded",
        action="store_true",
        help="allow the embedded defaults (publish to the local bare nm-kube-config repo)",
    )
    worker.set_defaults(handler=cmd_worker)
    demo = sub.add_parser(
        "demo",
        help="the main job on embedded defaults: request -> DNS -> Pulumi -> Git",
        description="Start a Temporal dev server, a worker, a loopback DNS server and HTTPS "
        "ingress; seed three sample tenants; drive them through the workflows with the real "
        "Pulumi engine; commit their YAML to a local nm-kube-config; print the result.",
    )
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.add_argument(
        "--cluster",
        action="store_true",
        help="issue real certificates: loopback Kubernetes API server (cluster mode), "
        "cert-manager's controllers, Pebble and BIND, DNS-01 by CNAME delegation (about 2 "
        "minutes; needs scripts/setup-kubernetes.sh and scripts/setup-certificates.sh)",
    )
    demo.set_defaults(handler=cmd_demo)
