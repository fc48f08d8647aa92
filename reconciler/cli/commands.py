"""Sub-commands beyond `doctor`; each feature registers its own parsers here."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Later features add their sub-commands here."""
