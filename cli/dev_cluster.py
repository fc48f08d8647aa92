"""`portal-domains dev-cluster up|down|status`: a real Kubernetes API server on loopback.

etcd and kube-apiserver (built by scripts/setup.sh), the real cert-manager and
Istio CRDs, a kubeconfig under the local state folder. `down` stops exactly
what `up` started. The tests start the same cluster (loopback.cluster).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli import output
from cli.common import json_flag
from cli.exit_codes import CliError, ExitCode
from core.settings import Settings
from loopback import cluster


def state_dir(settings: Settings) -> Path:
    return settings.work_dir / "dev-cluster"


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    progress = (lambda _line: None) if args.json else output.progress
    try:
        info = cluster.start(state_dir(settings), progress=progress)
    except cluster.ClusterError as err:
        raise CliError(str(err), ExitCode.UNAVAILABLE) from err
    if args.json:
        output.emit_json(
            {"server": info.server, "kubeconfig": str(info.kubeconfig), "crds": list(info.crds)}
        )
    else:
        output.line(f"API server {info.server} is ready with {len(info.crds)} CRDs")
        output.line(f"export KUBECONFIG={info.kubeconfig}")
    return ExitCode.OK


def _cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    progress = (lambda _line: None) if args.json else output.progress
    stopped = cluster.stop(state_dir(settings), progress=progress)
    if args.json:
        output.emit_json({"stopped": stopped})
    else:
        output.line("dev cluster stopped" if stopped else "no dev cluster was running")
    return ExitCode.OK


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    seen = cluster.status(state_dir(settings))
    if args.json:
        output.emit_json(
            {
                "state": seen.state,
                "server": seen.server,
                "processes": dict(seen.processes),
                "readyz": seen.readyz,
                "detail": seen.detail,
            }
        )
    else:
        output.line(f"{seen.state}: {seen.detail}")
        if seen.running:
            output.line(f"export KUBECONFIG={state_dir(settings) / 'kubeconfig'}")
    return ExitCode.OK if seen.running else ExitCode.UNAVAILABLE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "dev-cluster",
        help="a loopback Kubernetes API server with the real cert-manager and Istio CRDs",
        description="Start, stop or inspect etcd + kube-apiserver on loopback (state in "
        "$PORTAL_DOMAINS_HOME/dev-cluster). There is no scheduler or kubelet: objects are "
        "stored and validated, nothing runs.",
    )
    commands = group.add_subparsers(dest="dev_cluster_command", required=True, metavar="COMMAND")
    for name, handler, text in (
        ("up", _cmd_up, "start it, install the CRDs, print `export KUBECONFIG=...`"),
        ("down", _cmd_down, "stop exactly what `up` started"),
        ("status", _cmd_status, "running or not, and what /readyz says (exit 3 when stopped)"),
    ):
        parser = commands.add_parser(name, help=text, description=text)
        json_flag(parser)
        parser.set_defaults(handler=handler)
