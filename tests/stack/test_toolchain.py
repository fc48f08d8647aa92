"""The Pulumi engine, language host and Kubernetes provider work offline.

These run the real CLI built by scripts/setup.sh against a file backend in a
temporary folder: no cluster, no network, no plugin downloads.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest

from stack.toolchain import (
    DEV_PASSPHRASE,
    PassphraseRefused,
    PulumiEnvironment,
    pulumi_environment,
)
from stack.workspace import open_stack

pytestmark = pytest.mark.pulumi


@pytest.fixture
def penv(work_dir: Path) -> PulumiEnvironment:
    env = pulumi_environment(work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
    assert env.toolchain.bin_dir is not None or env.toolchain.executable("pulumi"), (
        "no Pulumi toolchain: run scripts/setup.sh"
    )
    return env


def _pulumi(penv: PulumiEnvironment, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = penv.toolchain.executable("pulumi")
    assert exe is not None
    return subprocess.run(
        [exe, *args],
        cwd=cwd,
        env=penv.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_pulumi_cli_reports_the_pinned_version(penv: PulumiEnvironment, tmp_path: Path) -> None:
    result = _pulumi(penv, "version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"v{penv.toolchain.versions.cli}"


def _certificate_program(render_dir: Path, *, with_certificate: bool) -> Callable[[], None]:
    def program() -> None:
        provider = k8s.Provider("render", render_yaml_to_directory=str(render_dir))
        if with_certificate:
            k8s.apiextensions.CustomResource(
                "acme-certificate",
                api_version="cert-manager.io/v1",
                kind="Certificate",
                metadata={"name": "portal-domain-abc1234", "namespace": "istio-system"},
                spec={
                    "secretName": "portal-domain-abc1234-tls",
                    "dnsNames": ["portal.acme.com"],
                    "issuerRef": {"name": "letsencrypt-http01", "kind": "ClusterIssuer"},
                },
                opts=pulumi.ResourceOptions(provider=provider),
            )

    return program


def test_a_removed_resource_is_pruned_by_the_stack_diff(
    penv: PulumiEnvironment, work_dir: Path
) -> None:
    render_dir = work_dir / "rendered"

    def open_with(with_certificate: bool):  # type: ignore[no-untyped-def]
        return open_stack(
            penv,
            project="toolchain-check",
            stack="mini",
            program=_certificate_program(render_dir, with_certificate=with_certificate),
            work_dir=work_dir / "ws",
        )

    stack = open_with(True)
    preview = stack.preview()
    assert preview.change_summary.get("create") == 3  # stack, provider, certificate
    up = stack.up()
    assert up.summary.result == "succeeded"
    rendered = list(render_dir.rglob("*.yaml"))
    assert len(rendered) == 1
    assert "portal.acme.com" in rendered[0].read_text()
    state = stack.export_stack().deployment
    types = sorted(r["type"] for r in state["resources"])
    assert "kubernetes:cert-manager.io/v1:Certificate" in types

    stack = open_with(False)
    preview = stack.preview()
    assert preview.change_summary.get("delete") == 1
    up = stack.up()
    assert up.summary.resource_changes is not None
    assert up.summary.resource_changes.get("delete") == 1
    types = [r["type"] for r in stack.export_stack().deployment["resources"]]
    assert "kubernetes:cert-manager.io/v1:Certificate" not in types


PACK_MAIN = """
from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy


def single_host(args, report_violation):
    if args.resource_type == "kubernetes:cert-manager.io/v1:Certificate":
        names = args.props.get("spec", {}).get("dnsNames", [])
        if len(names) != 1:
            report_violation(f"expected exactly one dnsName, got {names}")


PolicyPack(
    name="tiny",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(name="one-host", description="one host", validate=single_host)
    ],
)
"""

PROGRAM_MAIN = """
import json, os
import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("render", render_yaml_to_directory=os.environ["RENDER_DIR"])
k8s.apiextensions.CustomResource(
    "cert",
    api_version="cert-manager.io/v1",
    kind="Certificate",
    metadata={"name": "c", "namespace": "istio-system"},
    spec={"secretName": "s", "dnsNames": json.loads(os.environ["DNS_NAMES"]),
          "issuerRef": {"name": "i", "kind": "ClusterIssuer"}},
    opts=pulumi.ResourceOptions(provider=provider),
)
"""


@pytest.mark.parametrize(
    ("dns_names", "passes"),
    [(["portal.acme.com"], True), (["portal.acme.com", "evil.example.org"], False)],
)
def test_a_mandatory_policy_blocks_a_violating_preview(
    penv: PulumiEnvironment, tmp_path: Path, dns_names: list[str], passes: bool
) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "PulumiPolicy.yaml").write_text("runtime: python\ndescription: tiny test pack\n")
    (pack / "__main__.py").write_text(PACK_MAIN)
    program = tmp_path / "program"
    program.mkdir()
    (program / "Pulumi.yaml").write_text("name: policy-check\nruntime: python\n")
    (program / "__main__.py").write_text(PROGRAM_MAIN)
    env = {**penv.env(), "RENDER_DIR": str(tmp_path / "out"), "DNS_NAMES": json.dumps(dns_names)}
    exe = penv.toolchain.executable("pulumi")
    assert exe is not None

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, *args],
            cwd=program,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    assert run("stack", "init", "ci").returncode == 0
    result = run("preview", "--non-interactive", "--policy-pack", str(pack))
    output = result.stdout + result.stderr
    if passes:
        assert result.returncode == 0, output
    else:
        assert result.returncode != 0, output
        assert "one-host" in output
        assert "expected exactly one dnsName" in output


# ------------------------------------------------------ the prod passphrase


@pytest.mark.parametrize(
    "environ", [{}, {"PULUMI_CONFIG_PASSPHRASE": ""}, {"PULUMI_CONFIG_PASSPHRASE": DEV_PASSPHRASE}]
)
def test_prod_refuses_the_built_in_development_passphrase(
    work_dir: Path, environ: dict[str, str]
) -> None:
    # The development passphrase is in this repository: prod secrets encrypted
    # with it would be readable by anyone with the state.
    with pytest.raises(PassphraseRefused, match="PULUMI_CONFIG_PASSPHRASE"):
        pulumi_environment(work_dir=work_dir, environ=environ, environment="prod")


def test_other_environments_fall_back_to_the_development_passphrase(work_dir: Path) -> None:
    env = pulumi_environment(work_dir=work_dir, environ={}, environment="staging")
    assert env.passphrase == DEV_PASSPHRASE


def test_prod_runs_with_its_own_passphrase(work_dir: Path) -> None:
    env = pulumi_environment(
        work_dir=work_dir, environ={"PULUMI_CONFIG_PASSPHRASE": "s3cret"}, environment="prod"
    )
    assert env.env()["PULUMI_CONFIG_PASSPHRASE"] == "s3cret"
