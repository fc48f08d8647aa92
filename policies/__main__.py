"""Entry point the Pulumi engine runs for `--policy-pack policies`.

The engine starts `python -m pulumi.policy <address> <this folder>`, which runs
this file; constructing the PolicyPack serves it until the engine is done.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The engine puts this folder, not the repository root, on sys.path; make the
# checkout the pack lives in win over any installed copy of the project.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.rules import policies  # noqa: E402

PACK_NAME = "portal-domains"


def main() -> None:
    PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())


if __name__ == "__main__":
    main()
