"""The stack commands against a real SQLite database, the real engine and a bare Git remote.

Also proves that `pulumi preview -s staging`, run by hand from (a copy of) the
repo root, uses the same program, config and database as the automation API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cli.main import main
from db import migrate
from db.service import DomainService
from db.session import make_engine, make_session_factory
from stack.toolchain import REPO_ROOT, pulumi_environment
from tests.support.seed import seed_pending_certificate

pytestmark = pytest.mark.pulumi

DOMAINS = ["portal.acme.com", "clients.globex.io"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'portal-domains.db'}"
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(home))
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", url)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test")
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    migrate.upgrade(url)
    seed_pending_certificate(url, DOMAINS)
    return home


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out
    result: dict[str, object] = json.loads(out)
    return result


def test_preview_then_reconcile_commits_once_and_is_idempotent(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preview", "--env", "staging", "--json", "--quiet"]) == 0
    preview = _json(capsys)
    assert preview["counts"] == {"create": 6, "update": 0, "replace": 0, "delete": 0}

    assert main(["reconcile", "--env", "staging", "--local", "--json", "--quiet"]) == 0
    first = _json(capsys)
    assert first["commit"]
    assert len(first["changed_files"]) == 3  # type: ignore[arg-type]  # + cluster-issuer
    log = subprocess.run(
        ["git", "--git-dir", str(home / "nm-kube-config.git"), "log", "--format=%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    files = sorted(name.removesuffix(".yaml") for name in first["changed_files"])  # type: ignore[attr-defined]
    assert log.stdout.splitlines()[0] == f"chore(portal-domains): sync {', '.join(files)}"

    assert main(["reconcile", "--env", "staging", "--local", "--json", "--quiet"]) == 0
    second = _json(capsys)
    assert second["commit"] is None
    assert second["counts"] == {"create": 0, "update": 0, "replace": 0, "delete": 0}

    out = home / "export"
    assert main(["export", "--env", "staging", "--out", str(out), "--json"]) == 0
    exported = _json(capsys)
    assert len(exported["written"]) == 3  # type: ignore[arg-type]  # + cluster-issuer

    # A same-named file portal-domains did not write is never overwritten: one
    # clear error line, no traceback, the file as it was.
    theirs = out / Path(str(exported["directory"])).relative_to(out) / exported["written"][0]  # type: ignore[index]
    theirs.write_text("kind: ConfigMap\n")
    assert main(["export", "--env", "staging", "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "was not written by portal-domains" in err
    assert "Traceback" not in err
    assert theirs.read_text() == "kind: ConfigMap\n"


def test_up_without_a_terminal_refuses_deletions_unless_confirmed(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", "--env", "staging", "--yes", "--quiet"]) == 0
    capsys.readouterr()
    url = f"sqlite:///{home / 'portal-domains.db'}"
    service = DomainService(
        make_session_factory(make_engine(url)), base_domain="portal.algapsa.com"
    )
    victim = service.list()[0]
    service.disable(victim.tenant_id, "operator:test")
    assert main(["up", "--env", "staging", "--quiet"]) == 4
    assert "re-run with --yes" in capsys.readouterr().err
    assert main(["up", "--env", "staging", "--yes", "--json", "--quiet"]) == 0
    assert _json(capsys)["deleted_tenants"] == [victim.canonical_prefix]


def test_pulumi_preview_from_the_repo_root_reads_the_same_database_and_config(
    home: Path, tmp_path: Path
) -> None:
    # A copy of the root, so the hand run cannot write into the checkout.
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(
        REPO_ROOT / "stack", root / "stack", ignore=shutil.ignore_patterns("__pycache__")
    )
    penv = pulumi_environment(work_dir=home, environ={"PULUMI_CONFIG_PASSPHRASE": "test"})
    exe = penv.toolchain.executable("pulumi")
    assert exe is not None
    env = {
        **penv.env(),
        "PORTAL_DOMAINS_HOME": str(home),
        "PORTAL_DOMAINS_DATABASE_URL": f"sqlite:///{home / 'portal-domains.db'}",
    }
    subprocess.run(
        [exe, "stack", "init", "staging"], cwd=root, env=env, check=True, capture_output=True
    )
    result = subprocess.run(
        [
            exe,
            "preview",
            "-s",
            "staging",
            "--non-interactive",
            "--policy-pack",
            str(REPO_ROOT / "policies"),
            "--policy-pack-config",
            str(REPO_ROOT / "policies" / "config" / "staging.json"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 domain row(s) loaded from the database" in result.stdout
    assert "11 to create" in result.stdout  # stack, provider, issuer, 2 components, 6 objects
    assert "portal-domains@v" in result.stdout  # the policy pack ran


def test_reconcile_goes_through_temporal_and_says_how_to_run_without_it(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_TEMPORAL_ADDRESS", "127.0.0.1:1")
    assert main(["reconcile", "--env", "staging"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach Temporal at 127.0.0.1:1" in err
    assert "--local" in err
    assert main(["reconcile", "--env", "staging", "--recover"]) == 2
    assert "--recover applies to --local" in capsys.readouterr().err
