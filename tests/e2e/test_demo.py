"""The README's main job (`portal-domains demo`) works on embedded defaults, twice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cli.main import main

pytestmark = [pytest.mark.pulumi, pytest.mark.temporal]


def test_the_demo_settles_every_sample_and_a_second_run_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PORTAL_DOMAINS_DATABASE_URL", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    assert main(["demo", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    statuses = {d["domain"]: d["status"] for d in first["domains"]}
    assert statuses == {
        "portal.acme.com": "active",
        "clients.globex.io": "active",
        "help.initech.co.uk": "dns_failed",
    }
    assert len(first["files"]) == 3
    assert "cluster-issuer.yaml" in first["files"]
    assert first["commits"][0].split(" ", 1)[1].startswith("chore(portal-domains): sync ")
    assert "cluster-issuer" in first["commits"][0]

    assert main(["demo", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["domains"] == first["domains"]
    assert second["commits"] == first["commits"]  # nothing new to commit
    assert second["reconcile"]["ok"] is True
    assert second["reconcile"]["commit"] is None


@pytest.mark.kubernetes
def test_the_cluster_demo_issues_real_certificates_from_pebble_by_dns01_delegation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PORTAL_DOMAINS_DATABASE_URL", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    assert main(["demo", "--cluster", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    statuses = {d["domain"]: d["status"] for d in report["domains"]}
    assert statuses == {
        "portal.acme.com": "active",
        "clients.globex.io": "active",
        "help.initech.co.uk": "dns_failed",
    }
    issued = {tuple(c["dns_names"]): c for c in report["certificates"]}
    assert set(issued) == {("portal.acme.com",), ("clients.globex.io",)}
    for certificate in issued.values():
        assert certificate["issuer"].startswith("CN=Pebble Intermediate CA")
    assert "cluster-issuer.yaml" in report["files"]
    issuer = subprocess.run(
        [
            "git",
            "--git-dir",
            report["remote"],
            "show",
            f"main:{report['manifest_root']}/cluster-issuer.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "cnameStrategy: Follow" in issuer
