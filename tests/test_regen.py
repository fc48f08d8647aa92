"""Golden files and histories are rewritten only on request, and never under CI."""

from __future__ import annotations

import pytest

from tests.support.regen import may_rewrite


def test_a_rewrite_request_is_refused_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPDATE_GOLDEN", "1")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RuntimeError, match="refused under CI"):
        may_rewrite("UPDATE_GOLDEN")


def test_a_rewrite_happens_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("RECORD_HISTORY", raising=False)
    assert may_rewrite("RECORD_HISTORY") is False
    monkeypatch.setenv("RECORD_HISTORY", "1")
    assert may_rewrite("RECORD_HISTORY") is True
