"""`portal-domains gitops adopt --dry-run` against a real SQLite database and a bare Git remote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import git
import pytest

from adapters.gitops import ensure_bare_remote
from cli.main import main
from core.records import DomainRecord
from db import migrate
from reconciler.environment_reconcile import all_records
from stack.config import load_stack_config
from tests.support.seed import seed_pending_certificate

DOMAINS = ["portal.acme.com", "clients.globex.io"]
FOLDER = load_stack_config("staging").manifest_root


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'portal-domains.db'}"
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(home))
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", url)
    monkeypatch.delenv("PORTAL_DOMAINS_GITOPS_REMOTE", raising=False)
    migrate.upgrade(url)
    return home


@pytest.fixture
def rows(home: Path) -> list[DomainRecord]:
    url = f"sqlite:///{home / 'portal-domains.db'}"
    service = seed_pending_certificate(url, DOMAINS)
    return sorted(all_records(service), key=lambda r: r.domain)


def push_by_hand(home: Path, files: dict[str, str]) -> str:
    """Commit files to the embedded nm-kube-config as someone else; the new head."""
    remote = ensure_bare_remote(home / "nm-kube-config.git")
    clone = git.Repo.clone_from(remote, home / "by-hand")
    for name, content in files.items():
        path = home / "by-hand" / FOLDER / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    clone.git.add("--all")
    clone.git.commit("-m", "by hand", author="someone <someone@example.com>")
    clone.git.push("origin", "HEAD:main")
    return str(git.Repo(remote).commit("main").hexsha)


def virtual_service(host: str) -> str:
    return f"kind: VirtualService\nmetadata:\n  name: old\nspec:\n  hosts:\n  - {host}\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dry_run_lists_what_the_next_publish_adopts_removes_and_leaves_without_committing(
    home: Path, rows: list[DomainRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    [globex, acme] = rows
    head = push_by_hand(
        home,
        {
            f"{acme.prefix}.yaml": virtual_service(acme.domain),
            "globex-old.yaml": virtual_service(globex.domain),
            "kustomization.yaml": "resources: []\n",
            "notes.yaml": "hosts: [unclosed\n",
        },
    )

    code, out, _ = run(capsys, "gitops", "adopt", "--env", "staging", "--dry-run", "--json")

    assert code == 0
    report: dict[str, Any] = json.loads(out)
    assert report["dry_run"] is True
    assert report["directory"] == FOLDER
    assert {s["path"]: s["action"] for s in report["steps"]} == {
        f"{FOLDER}/{acme.prefix}.yaml": "adopt",
        f"{FOLDER}/globex-old.yaml": "remove",
        f"{FOLDER}/kustomization.yaml": "leave",
        f"{FOLDER}/notes.yaml": "unreadable",
    }
    removed = next(s for s in report["steps"] if s["action"] == "remove")
    assert removed["taken_over_by"] == [f"{globex.prefix}.yaml"]
    assert removed["line"] == (
        f"would remove {FOLDER}/globex-old.yaml (was not written by portal-domains; "
        f"{globex.prefix}.yaml serves {globex.domain})"
    )
    assert report["counts"] == {
        "adopt": 1,
        "remove": 1,
        "conflict": 0,
        "leave": 1,
        "unreadable": 1,
    }
    assert git.Repo(home / "nm-kube-config.git").commit("main").hexsha == head


def test_dry_run_text_names_each_file_and_the_totals(
    home: Path, rows: list[DomainRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    [_, acme] = rows
    push_by_hand(home, {f"{acme.prefix}.yaml": virtual_service(acme.domain)})

    code, out, _ = run(capsys, "gitops", "adopt", "--env", "staging", "--dry-run")

    assert code == 0
    assert f"  would adopt {FOLDER}/{acme.prefix}.yaml (was not written by portal-domains)" in (
        out.splitlines()
    )
    assert out.splitlines()[-1] == (
        "1 to adopt, 0 to remove, 0 in conflict, 0 foreign left alone, 0 not valid YAML"
    )


def test_a_folder_of_our_own_files_has_nothing_to_adopt(
    home: Path, rows: list[DomainRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "gitops", "adopt", "--env", "staging", "--dry-run")

    assert code == 0
    assert out.strip().endswith(
        f"{FOLDER}/ holds only files portal-domains wrote; nothing to adopt"
    )


def test_without_dry_run_it_points_at_the_reconcile_and_exits_2(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "gitops", "adopt", "--env", "staging")

    assert code == 2
    assert out == ""
    assert "portal-domains reconcile --env staging" in err
    assert "--dry-run" in err
