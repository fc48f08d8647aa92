"""The installed script's exit path (cli.main.console)."""

from __future__ import annotations

import atexit
import os

import pytest

import cli.main
import reconciler.wiring


class _Exited(Exception):
    def __init__(self, how: str, code: int) -> None:
        super().__init__(how, code)
        self.how, self.code = how, code


def _record_exits(monkeypatch: pytest.MonkeyPatch, flushed: list[str]) -> None:
    def hard_exit(code: int) -> None:
        raise _Exited("os._exit", code)

    monkeypatch.setattr(os, "_exit", hard_exit)
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: flushed.append("atexit"))


def test_a_process_that_opened_a_temporal_client_skips_interpreter_teardown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # temporalio/sdk-python#300: teardown can abort with -6 after a client was used.
    flushed: list[str] = []
    _record_exits(monkeypatch, flushed)
    monkeypatch.setattr(reconciler.wiring, "_client_opened", True)
    monkeypatch.setattr(cli.main, "main", lambda argv=None: 3)
    with pytest.raises(_Exited) as exited:
        cli.main.console([])
    assert (exited.value.how, exited.value.code) == ("os._exit", 3)
    assert flushed == ["atexit"]  # spans and events are still flushed first


def test_without_a_temporal_client_the_exit_is_the_normal_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flushed: list[str] = []
    _record_exits(monkeypatch, flushed)
    monkeypatch.setattr(reconciler.wiring, "_client_opened", False)
    monkeypatch.setattr(cli.main, "main", lambda argv=None: 4)
    with pytest.raises(SystemExit) as exited:
        cli.main.console([])
    assert exited.value.code == 4
    assert flushed == []
