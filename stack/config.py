"""Load and validate a Pulumi.<env>.yaml stack configuration file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from core.config import ConfigError, StackConfig, parse_stack_config
from stack.toolchain import REPO_ROOT

ENVIRONMENTS = ("staging", "prod")


def stack_config_path(environment: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{environment}.yaml"


def load_stack_config(
    environment: str, root: Path = REPO_ROOT, environ: Mapping[str, str] | None = None
) -> StackConfig:
    """The stack config of `environment`; in cluster mode the kubeconfig may come from
    $KUBECONFIG when the file names none (as kubectl does)."""
    path = stack_config_path(environment, root)
    if not path.is_file():
        known = ", ".join(sorted(p.name[7:-5] for p in root.glob("Pulumi.*.yaml")))
        raise ConfigError("environment", f"no stack file {path.name} (known: {known})")
    try:
        document: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("environment", f"{path.name} is not valid YAML: {exc}") from None
    raw = document.get("config") or {}
    if not isinstance(raw, dict):
        raise ConfigError("environment", f"{path.name}: `config` must be a map")
    env = os.environ if environ is None else environ
    if _value(raw, "mode") == "cluster" and _value(raw, "kubeconfig") is None:
        if env.get("KUBECONFIG"):
            raw = {**raw, "kubeconfig": env["KUBECONFIG"].split(os.pathsep)[0]}
    return parse_stack_config(raw, environment=environment)


def _value(raw: Mapping[str, Any], key: str) -> Any:
    return raw.get(f"portal-domains:{key}", raw.get(key))
