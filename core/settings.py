"""Process settings, read once in an entrypoint and passed down.

Every value has an embedded default so the README's main job runs with no
configuration at all; production overrides them with PORTAL_DOMAINS_* variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import ErrorKind, PortalDomainsError

# The checkout (or install) root: the embedded defaults keep their state beside it.
REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(PortalDomainsError, ValueError):
    """A setting has a value we cannot use; the message names the variable."""

    code = "invalid_setting"
    kind = ErrorKind.INVALID_INPUT


@dataclass(frozen=True, kw_only=True)
class Settings:
    work_dir: Path
    database_url: str
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    posthog_api_key: str | None
    posthog_host: str
    otlp_endpoint: str | None
    base_domain: str
    environment: str
    dns_nameservers: tuple[str, ...]
    dns_port: int
    probe_port: int
    probe_connect_address: str | None
    probe_ca_bundle: str | None
    gitops_remote: str | None  # None: the embedded local bare repo
    timings: str  # a profile name or a JSON object of overrides (reconciler.timings)
    debounce_seconds: float
    start_workflows: bool  # after-commit hook signals Temporal (CLI/API)
    heartbeat_timeout_seconds: float
    # The worker skips the engine when nothing changed, but runs every stack in
    # full at least this often (catches drift the drift check cannot see).
    full_pass_minutes: int = 60
    # Activities one worker runs at once. A shard's `up` is CPU-bound: with several
    # workers, a small number here spreads an environment's shards over them.
    worker_max_activities: int = 16
    # nm-kube-config credentials outside the URL (adapters.gitops.GitSettings).
    gitops_token_file: Path | None = None
    gitops_username: str = "x-access-token"
    gitops_ssh_key: Path | None = None
    gitops_ssh_known_hosts: Path | None = None
    # Where Pulumi.<env>.yaml files are read from: the repository's own unless
    # a deployment (or `demo --cluster`) keeps its stack files elsewhere.
    stack_config_dir: Path = REPO_ROOT

    @property
    def embedded_remote(self) -> Path:
        return self.work_dir / "nm-kube-config.git"

    def gitops_worktree(self, environment: str) -> Path:
        return self.work_dir / "gitops" / environment

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        work_dir = Path(env.get("PORTAL_DOMAINS_HOME") or REPO_ROOT / ".portal-domains")
        database_url = env.get("PORTAL_DOMAINS_DATABASE_URL") or (
            f"sqlite:///{work_dir / 'portal-domains.db'}"
        )
        if "://" not in database_url:
            raise SettingsError(
                f"PORTAL_DOMAINS_DATABASE_URL={database_url!r} is not a URL "
                "(expected postgresql+psycopg://... or sqlite:///...)"
            )
        return cls(
            work_dir=work_dir,
            database_url=database_url,
            temporal_address=env.get("PORTAL_DOMAINS_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            temporal_namespace=env.get("PORTAL_DOMAINS_TEMPORAL_NAMESPACE", "default"),
            task_queue=env.get("PORTAL_DOMAINS_TASK_QUEUE", "portal-domains"),
            posthog_api_key=env.get("PORTAL_DOMAINS_POSTHOG_API_KEY") or None,
            posthog_host=env.get("PORTAL_DOMAINS_POSTHOG_HOST", "https://us.i.posthog.com"),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            base_domain=env.get("PORTAL_DOMAINS_BASE_DOMAIN", "portal.algapsa.com"),
            environment=env.get("PORTAL_DOMAINS_ENVIRONMENT", "staging"),
            dns_nameservers=tuple(
                n.strip()
                for n in env.get("PORTAL_DOMAINS_DNS_NAMESERVERS", "").split(",")
                if n.strip()
            ),
            dns_port=bounded_int(env, "PORTAL_DOMAINS_DNS_PORT", 53),
            probe_port=bounded_int(env, "PORTAL_DOMAINS_PROBE_PORT", 443),
            probe_connect_address=env.get("PORTAL_DOMAINS_PROBE_CONNECT_ADDRESS") or None,
            probe_ca_bundle=env.get("PORTAL_DOMAINS_PROBE_CA_BUNDLE") or None,
            gitops_remote=env.get("PORTAL_DOMAINS_GITOPS_REMOTE") or None,
            timings=env.get("PORTAL_DOMAINS_TIMINGS") or "production",
            debounce_seconds=float(bounded_int(env, "PORTAL_DOMAINS_DEBOUNCE_SECONDS", 2)),
            heartbeat_timeout_seconds=float(
                bounded_int(env, "PORTAL_DOMAINS_HEARTBEAT_TIMEOUT_SECONDS", 60)
            ),
            start_workflows=_choice(env, "PORTAL_DOMAINS_START_WORKFLOWS", ("on", "off")) == "on",
            full_pass_minutes=bounded_int(env, "PORTAL_DOMAINS_FULL_PASS_MINUTES", 60, 0, 10080),
            worker_max_activities=bounded_int(
                env, "PORTAL_DOMAINS_WORKER_MAX_ACTIVITIES", 16, 1, 256
            ),
            gitops_token_file=_optional_path(env, "PORTAL_DOMAINS_GITOPS_TOKEN_FILE"),
            gitops_username=env.get("PORTAL_DOMAINS_GITOPS_USERNAME") or "x-access-token",
            gitops_ssh_key=_optional_path(env, "PORTAL_DOMAINS_GITOPS_SSH_KEY"),
            gitops_ssh_known_hosts=_optional_path(env, "PORTAL_DOMAINS_GITOPS_SSH_KNOWN_HOSTS"),
            stack_config_dir=Path(env.get("PORTAL_DOMAINS_STACK_CONFIG_DIR") or REPO_ROOT),
        )


def _optional_path(env: Mapping[str, str], key: str) -> Path | None:
    raw = env.get(key)
    return Path(raw) if raw else None


def bounded_int(
    env: Mapping[str, str], key: str, default: int, low: int = 0, high: int = 65535
) -> int:
    """An integer setting in [low, high]; empty or unset gives the default."""
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{key}={raw!r} is out of range ({low}-{high})")
    return value


def _choice(env: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    value = env.get(key) or choices[0]
    if value not in choices:
        raise SettingsError(f"{key}={value!r}: expected one of {', '.join(choices)}")
    return value
