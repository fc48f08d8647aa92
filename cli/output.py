"""The CLI's output layer: the only place in the project that prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def emit_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def line(text: str = "") -> None:
    print(text)


def error(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)


def progress(text: str) -> None:
    """Progress for long operations goes to stderr so --json stdout stays clean."""
    print(text, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*headers).rstrip())
    for row in cells:
        print(fmt.format(*row).rstrip())


ProgressFn = Callable[[str], None]
