"""`portal-domains worker` refuses the embedded stand-in remote unless asked for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.exit_codes import ExitCode
from cli.main import main


def test_a_worker_without_a_gitops_remote_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path))
    monkeypatch.delenv("PORTAL_DOMAINS_GITOPS_REMOTE", raising=False)
    # An unreachable Temporal: had the guard let it through, the error would differ.
    monkeypatch.setenv("PORTAL_DOMAINS_TEMPORAL_ADDRESS", "127.0.0.1:1")
    assert main(["worker"]) == ExitCode.INVALID_INPUT
    err = capsys.readouterr().err
    assert "PORTAL_DOMAINS_GITOPS_REMOTE is not set" in err
    assert "--embedded" in err


def test_embedded_lets_the_worker_past_the_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTAL_DOMAINS_HOME", str(tmp_path))
    monkeypatch.delenv("PORTAL_DOMAINS_GITOPS_REMOTE", raising=False)
    monkeypatch.setenv("PORTAL_DOMAINS_TEMPORAL_ADDRESS", "127.0.0.1:1")
    assert main(["worker", "--embedded"]) == ExitCode.UNAVAILABLE  # reached Temporal
    assert "cannot reach Temporal" in capsys.readouterr().err
