"""Whether a test may rewrite its golden file or recorded history (never under CI)."""

from __future__ import annotations

import os


def may_rewrite(variable: str) -> bool:
    """True when `variable`=1 asks for a rewrite; under CI that request is an error.

    CI must check golden files and histories, never regenerate them: a rewrite
    there would turn every such test into one that cannot fail.
    """
    if os.environ.get(variable) != "1":
        return False
    if os.environ.get("CI"):
        raise RuntimeError(f"{variable}=1 is refused under CI (CI checks, never rewrites)")
    return True
