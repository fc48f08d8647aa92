"""Where the Pulumi toolchain lives and which environment every Pulumi call gets.

scripts/setup.sh builds the CLI, the Python language host and the Kubernetes
provider into a cache folder keyed by the versions in
scripts/toolchain/versions.env. This module finds that folder (or a toolchain
already on PATH) and builds the offline-safe environment: a file backend in a
project-local state folder, a project-local PULUMI_HOME, no update checks and no
plugin downloads. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import ErrorKind, PortalDomainsError
from core.settings import REPO_ROOT

__all__ = ["REPO_ROOT"]

log = logging.getLogger(__name__)

VERSIONS_FILE = REPO_ROOT / "scripts" / "toolchain" / "versions.env"
DEV_PASSPHRASE = "portal-domains-local-development-only"


@dataclass(frozen=True, kw_only=True)
class ToolchainVersions:
    cli: str
    language_python: str
    kubernetes: str

    @property
    def cache_key(self) -> str:
        return f"pulumi-{self.cli}_python-{self.language_python}_kubernetes-{self.kubernetes}"


@dataclass(frozen=True, kw_only=True)
class Toolchain:
    """The folder holding pulumi and its plugins (None: rely on PATH)."""

    versions: ToolchainVersions
    bin_dir: Path | None

    def executable(self, name: str) -> str | None:
        if self.bin_dir is not None:
            candidate = self.bin_dir / name
            return str(candidate) if candidate.is_file() else None
        return shutil.which(name)


def read_pins(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=value lines of scripts/toolchain/versions.env (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def read_versions(path: Path = VERSIONS_FILE) -> ToolchainVersions:
    values = read_pins(path)
    try:
        return ToolchainVersions(
            cli=values["PULUMI_CLI_VERSION"],
            language_python=values["PULUMI_LANGUAGE_PYTHON_VERSION"],
            kubernetes=values["PULUMI_KUBERNETES_VERSION"],
        )
    except KeyError as missing:
        raise RuntimeError(f"{path} lacks {missing.args[0]}") from None


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("PORTAL_DOMAINS_CACHE"):
        return Path(env["PORTAL_DOMAINS_CACHE"])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "portal-domains"


def locate_toolchain(environ: dict[str, str] | None = None) -> Toolchain:
    """The cached build for the pinned versions if present, else PATH."""
    versions = read_versions()
    bin_dir = cache_root(environ) / "toolchain" / versions.cache_key / "bin"
    if (bin_dir / "pulumi").is_file():
        return Toolchain(versions=versions, bin_dir=bin_dir)
    return Toolchain(versions=versions, bin_dir=None)


@dataclass(frozen=True, kw_only=True)
class PulumiEnvironment:
    """Everything a Pulumi subprocess needs to run offline against local state."""

    toolchain: Toolchain
    state_dir: Path
    backend_url: str
    passphrase: str
    pulumi_home: Path
    python: str

    @property
    def state_is_private(self) -> bool:
        """The embedded file backend of this work directory: this host is its only writer."""
        return self.backend_url == f"file://{self.state_dir}"

    def env(self) -> dict[str, str]:
        path_parts = []
        if self.toolchain.bin_dir is not None:
            path_parts.append(str(self.toolchain.bin_dir))
        path_parts.append(str(Path(self.python).parent))
        path_parts.append(os.environ.get("PATH", "/usr/bin:/bin"))
        return {
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_HOME": str(self.pulumi_home),
            "PULUMI_PYTHON_CMD": self.python,
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            # The DIY backend otherwise copies the whole checkpoint into
            # .pulumi/backups on every update (5 MB per run at 300 tenants),
            # which nothing here reads; the per-update history and the .bak
            # written before each checkpoint (what recovery relies on) stay.
            "PULUMI_DIY_BACKEND_DISABLE_CHECKPOINT_BACKUPS": "true",
            # The provider takes KUBECONFIG as its kubeconfig, which gitops
            # (render) mode rejects: blank it; cluster mode passes one explicitly.
            "KUBECONFIG": "",
            "PATH": os.pathsep.join(path_parts),
        }

    def apply_to_process(self) -> None:
        """For code that calls the automation API in this process."""
        os.environ.update(self.env())


class PassphraseRefused(PortalDomainsError):
    """The production stack would be encrypted with the published development passphrase."""

    code = "insecure_passphrase"
    kind = ErrorKind.REFUSED


# Environments whose stack secrets must not be encrypted with DEV_PASSPHRASE.
PRODUCTION_ENVIRONMENTS = frozenset({"prod"})


def pulumi_environment(
    *, work_dir: Path, environ: dict[str, str] | None = None, environment: str | None = None
) -> PulumiEnvironment:
    """Build the environment; PULUMI_BACKEND_URL / PULUMI_CONFIG_PASSPHRASE override.

    `environment`: the stack's environment when known; for prod a missing
    passphrase, or the built-in development one, is refused (PassphraseRefused):
    that passphrase is in this repository, so it protects nothing.
    """
    env = os.environ if environ is None else environ
    state_dir = work_dir / "pulumi-state"
    backend = env.get("PULUMI_BACKEND_URL") or f"file://{state_dir}"
    passphrase = env.get("PULUMI_CONFIG_PASSPHRASE")
    if environment in PRODUCTION_ENVIRONMENTS and passphrase in (None, "", DEV_PASSPHRASE):
        raise PassphraseRefused(
            f"the {environment} stack needs its own PULUMI_CONFIG_PASSPHRASE: "
            + (
                "it is not set"
                if not passphrase
                else "it is the built-in local-development passphrase"
            )
            + ", which would encrypt the stack's secrets with a published value"
        )
    if not passphrase:
        passphrase = DEV_PASSPHRASE
        log.warning(
            "PULUMI_CONFIG_PASSPHRASE is not set: using the built-in local-development "
            "passphrase. Never use it for a shared or production stack."
        )
    if backend.startswith("file://"):
        Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    home = work_dir / "pulumi-home"
    home.mkdir(parents=True, exist_ok=True)
    return PulumiEnvironment(
        toolchain=locate_toolchain(dict(env)),
        state_dir=state_dir,
        backend_url=backend,
        passphrase=passphrase,
        pulumi_home=home,
        python=sys.executable,
    )


def _shell_exports() -> str:
    """`python -m stack.toolchain --shell`: export lines for scripts/pulumi-env.sh."""
    import shlex

    work_dir = Path(os.environ.get("PORTAL_DOMAINS_HOME") or REPO_ROOT / ".portal-domains")
    env = pulumi_environment(
        work_dir=work_dir, environment=os.environ.get("PORTAL_DOMAINS_ENVIRONMENT")
    )
    lines = [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.env().items())]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--shell"]:
        sys.stdout.write(_shell_exports() + "\n")
    else:
        sys.stderr.write("usage: python -m stack.toolchain --shell\n")
        sys.exit(2)
