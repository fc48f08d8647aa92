"""Sub-commands beyond `doctor`; each feature registers its own parsers here."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Later features add their sub-commands here."""
    from reconciler.cli import db_commands

    db_commands.register(sub)

    from reconciler.cli import stack_commands

    stack_commands.register(sub)

    from reconciler.cli import worker_commands

    worker_commands.register(sub)

    from reconciler.cli import policy_commands

    policy_commands.register(sub)

    from reconciler.cli import api_commands

    api_commands.register(sub)
