"""Open Pulumi stacks through the automation API with the offline environment.

Each (project, stack) gets a scratch work dir under the project's work folder,
so the automation API never writes into the committed Pulumi.<env>.yaml files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pulumi import automation as auto

from stack.toolchain import PulumiEnvironment

Program = Callable[[], None]


def pulumi_command(env: PulumiEnvironment) -> auto.PulumiCommand:
    bin_dir = env.toolchain.bin_dir
    root = str(bin_dir.parent) if bin_dir is not None else None
    return auto.PulumiCommand(root=root)


def open_stack(
    env: PulumiEnvironment,
    *,
    project: str,
    stack: str,
    program: Program,
    work_dir: Path,
) -> auto.Stack:
    """Create or select `stack` of `project`, running `program` inline."""
    work_dir.mkdir(parents=True, exist_ok=True)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        pulumi_home=str(env.pulumi_home),
        env_vars=env.env(),
        secrets_provider="passphrase",
        project_settings=auto.ProjectSettings(
            name=project,
            runtime="python",
            backend=auto.ProjectBackend(url=env.backend_url),
        ),
        pulumi_command=pulumi_command(env),
    )
    return auto.create_or_select_stack(
        stack_name=stack, project_name=project, program=program, opts=opts
    )
