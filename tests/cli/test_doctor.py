"""`portal-domains doctor` reports every component and fails when one is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.exit_codes import ExitCode
from cli.main import main


def test_doctor_reports_every_component_ok_on_a_set_up_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path))
    monkeypatch.delenv("PORTAL_DOMAINS_DATABASE_URL", raising=False)
    assert main(["doctor", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    assert [c["component"] for c in checks] == [
        "pulumi CLI",
        "python language host",
        "kubernetes plugin",
        "policy runtime",
        "temporal CLI",
        "database",
        "kube-apiserver",
        "etcd",
        "kubectl",
    ]
    assert all(c["ok"] for c in checks), checks


def test_doctor_exits_non_zero_with_a_hint_when_the_database_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path))
    monkeypatch.setenv(
        "PORTAL_DOMAINS_DATABASE_URL",
        "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2",
    )
    assert main(["doctor"]) == ExitCode.UNAVAILABLE
    out = capsys.readouterr().out
    assert "PROBLEM database" in out
    assert "PORTAL_DOMAINS_DATABASE_URL" in out


def test_doctor_points_at_setup_when_the_toolchain_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path))
    monkeypatch.setenv("PORTAL_DOMAINS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert main(["doctor"]) == ExitCode.UNAVAILABLE
    out = capsys.readouterr().out
    assert "PROBLEM pulumi CLI" in out
    assert "scripts/setup.sh" in out
