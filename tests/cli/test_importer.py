"""`portal-domains import`: the old implementation's rows adopted, certificates kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from cli.main import main

OLD_TENANT = "3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f"
OTHER = "9a8b7c6d-1111-4222-8333-444455556666"


def old_row(tenant: str, domain: str, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "domain": domain,
        "canonical_host": f"{UUID(tenant).hex[:7]}.portal.algapsa.com",
        "status": status,
        "status_message": "Active",
        "last_checked_at": "2026-11-30T10:00:00+00:00",
        # The TypeScript implementation named secrets after the tenant id.
        "certificate_secret_name": f"portal-domain-{tenant}",
        **extra,
    }


@pytest.fixture
def dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTAL_DOMAINS_DATABASE_URL", f"sqlite:///{tmp_path / 'pd.db'}")
    monkeypatch.setenv("PORTAL_DOMAINS_START_WORKFLOWS", "off")
    monkeypatch.setenv("USER", "migrator")
    assert main(["db", "upgrade"]) == 0
    path = tmp_path / "portal_domains.json"
    path.write_text(
        json.dumps(
            [
                old_row(OLD_TENANT, "portal.acme.com"),
                old_row(OTHER, "localhost"),  # invalid: reported, the rest imported
            ]
        )
    )
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_dry_run_shows_what_would_happen_and_writes_nothing(
    dump: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, "import", str(dump), "--dry-run")
    assert code == 1  # one invalid row
    assert report["dry_run"] is True
    assert [r["result"] for r in report["rows"]] == ["imported", "invalid"]
    assert "domain: reserved" in report["rows"][1]["reason"]
    code, listing = run_json(capsys, "domains", "list")
    assert listing == []


def test_import_keeps_hostname_status_and_secret_name_and_is_idempotent(
    dump: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, "import", str(dump))
    assert code == 1
    assert report["counts"] == {"imported": 1, "invalid": 1}
    code, view = run_json(capsys, "domains", "status", "--tenant", OLD_TENANT)
    assert view["domain"] == "portal.acme.com"
    assert view["status"] == "active"
    assert view["canonical_host"] == "3f2b6c1.portal.algapsa.com"
    assert view["certificate_secret_name"] == f"portal-domain-{OLD_TENANT}"
    code, audit = run_json(capsys, "domains", "audit", "--tenant", OLD_TENANT)
    assert [(e["action"], e["outcome"], e["actor"]) for e in audit] == [
        ("import", "ok", "operator:migrator")
    ]

    code, again = run_json(capsys, "import", str(dump))
    assert [r["result"] for r in again["rows"]] == ["unchanged", "invalid"]


def test_a_tenant_with_a_different_row_here_is_a_conflict_and_left_alone(
    dump: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    main(["domains", "request", "--tenant", OLD_TENANT, "--domain", "portal.acme-new.com"])
    code, report = run_json(capsys, "import", str(dump))
    assert code == 1
    assert report["rows"][0]["result"] == "conflict"
    assert "already has portal.acme-new.com" in report["rows"][0]["reason"]
    code, view = run_json(capsys, "domains", "status", "--tenant", OLD_TENANT)
    assert view["domain"] == "portal.acme-new.com"


def test_an_unreadable_source_exits_2(tmp_path: Path, dump: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    assert main(["import", str(bad)]) == 2
