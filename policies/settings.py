"""What each policy of the pack reads from policy configuration, and its values per environment.

One table (`SETTINGS`) says, for every policy, which configuration properties it
reads, their JSON schema and how to derive them from a `StackConfig`. From it:

- `schema_properties` gives the pack's config schemas, with defaults equal to the
  staging defaults of `StackConfig`, so `pulumi preview --policy-pack policies`
  without `--policy-pack-config` still runs;
- `policy_pack_config` gives the JSON object for `--policy-pack-config` for one
  environment (the committed `policies/config/<env>.json` are its output).

Pure: no Pulumi imports, no I/O except `write_policy_pack_config`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import StackConfig
from core.hostnames import RESERVED_DOMAINS, RESERVED_TLDS

CERTIFICATE_SECRET_COLOCATED = "certificate-secret-colocated"
CERTIFICATE_ISSUER_ALLOWED = "certificate-issuer-allowed"
CERTIFICATE_SINGLE_HOST = "certificate-single-host"
GATEWAY_TLS_REQUIRED = "gateway-tls-required"
ACME_CHALLENGE_NOT_SHADOWED = "acme-challenge-not-shadowed"
VIRTUALSERVICE_GATEWAY_QUALIFIED = "virtualservice-gateway-qualified"
VIRTUALSERVICE_DESTINATION_ALLOWED = "virtualservice-destination-allowed"
HOST_NOT_RESERVED = "host-not-reserved"
LABELS_REQUIRED = "labels-required"
UNIQUE_HOST_PER_STACK = "unique-host-per-stack"
DELETION_BUDGET = "deletion-budget"
CLUSTER_ISSUER_SOLVER = "cluster-issuer-solver"

# The environment a missing --policy-pack-config stands for.
DEFAULT_ENVIRONMENT = "staging"
# Names reserved for special or private use, each together with every name under it.
RESERVED_SUFFIXES: tuple[str, ...] = tuple(sorted(RESERVED_TLDS | RESERVED_DOMAINS))

_STRING: dict[str, Any] = {"type": "string", "minLength": 1}
_PORT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 65535}
_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string", "minLength": 1}}
_PERCENT: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 100}


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One configuration property of one policy."""

    key: str  # camelCase, as in the JSON file
    schema: Mapping[str, Any]
    value: Callable[[StackConfig], Any]


def _gateway_namespace(c: StackConfig) -> str:
    return c.gateway_namespace


SETTINGS: dict[str, tuple[Setting, ...]] = {
    CERTIFICATE_SECRET_COLOCATED: (
        Setting(key="gatewayNamespace", schema=_STRING, value=_gateway_namespace),
    ),
    CERTIFICATE_ISSUER_ALLOWED: (
        Setting(key="allowedIssuers", schema=_STRINGS, value=lambda c: list(c.allowed_issuers)),
        Setting(key="issuerKind", schema=_STRING, value=lambda c: c.issuer_kind),
        # The ClusterIssuer this stack declares (or relies on): the only one
        # whose solver is known to reach the gateway.
        Setting(key="issuerName", schema=_STRING, value=lambda c: c.issuer_name),
    ),
    CERTIFICATE_SINGLE_HOST: (),
    GATEWAY_TLS_REQUIRED: (),
    # Nothing to configure. With HTTP-01 every Certificate renews through the
    # solver, so its path must always be reachable; kept with dns01 too, since an
    # environment may switch back and every renewal then needs the path.
    ACME_CHALLENGE_NOT_SHADOWED: (),
    VIRTUALSERVICE_GATEWAY_QUALIFIED: (
        Setting(key="gatewayNamespace", schema=_STRING, value=_gateway_namespace),
    ),
    VIRTUALSERVICE_DESTINATION_ALLOWED: (
        Setting(key="backendHost", schema=_STRING, value=lambda c: c.backend_host),
        Setting(key="backendPort", schema=_PORT, value=lambda c: c.backend_port),
    ),
    HOST_NOT_RESERVED: (
        Setting(key="baseDomain", schema=_STRING, value=lambda c: c.base_domain),
        Setting(key="reservedSuffixes", schema=_STRINGS, value=lambda c: list(RESERVED_SUFFIXES)),
    ),
    LABELS_REQUIRED: (
        Setting(key="environment", schema=_STRING, value=lambda c: c.environment),
        Setting(key="managedBy", schema=_STRING, value=lambda c: c.managed_by),
    ),
    UNIQUE_HOST_PER_STACK: (),
    DELETION_BUDGET: (
        Setting(key="maxDeletePercent", schema=_PERCENT, value=lambda c: c.deletion_budget_percent),
    ),
    CLUSTER_ISSUER_SOLVER: (
        Setting(key="acmeIngressClass", schema=_STRING, value=lambda c: c.acme_ingress_class),
        Setting(
            key="acmeSolver",
            schema={"type": "string", "enum": ["http01", "dns01"]},
            value=lambda c: c.acme_solver,
        ),
    ),
}

# Not derived from StackConfig: the automation wrapper passes it per run, and
# its absence means "no record of the stack before this run" (the policy then
# does nothing), so it has no default.
TENANTS_BEFORE = "tenantsBefore"
_TENANTS_BEFORE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "uniqueItems": True,
}
# Tenants whose leaving the stack does not count against the budget: the database
# explains it (the row is disabled or no longer verified), as the empty-state guard
# already trusts, or this run holds their deletion for an operator to confirm.
TENANTS_EXCUSED = "tenantsExcused"


def committed_config_path(environment: str) -> Path:
    """`policies/config/<env>.json`: the committed output of `policy_pack_config` for an env."""
    return Path(__file__).resolve().parent / "config" / f"{environment}.json"


def default_stack_config() -> StackConfig:
    return StackConfig(environment=DEFAULT_ENVIRONMENT)


def defaults(policy: str) -> dict[str, Any]:
    """The values a policy uses when the configuration does not set them."""
    config = default_stack_config()
    return {s.key: s.value(config) for s in SETTINGS[policy]}


def schema_properties(policy: str) -> dict[str, dict[str, Any]]:
    """JSON schema properties for `policy`, each with its staging default."""
    config = default_stack_config()
    properties = {s.key: {**s.schema, "default": s.value(config)} for s in SETTINGS[policy]}
    if policy == DELETION_BUDGET:
        properties[TENANTS_BEFORE] = dict(_TENANTS_BEFORE_SCHEMA)
        properties[TENANTS_EXCUSED] = dict(_TENANTS_BEFORE_SCHEMA)
    return properties


def policy_pack_config(
    config: StackConfig,
    *,
    tenants_before: Sequence[str] | None = None,
    tenants_excused: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """The `--policy-pack-config` object for `config`'s environment.

    `tenants_before`: the tenant slugs the stack holds before this run; only the
    automation wrapper knows them, and `deletion-budget` needs them.
    """
    sections: dict[str, dict[str, Any]] = {}
    for policy, settings in SETTINGS.items():
        if settings:
            sections[policy] = {s.key: s.value(config) for s in settings}
    sections[DELETION_BUDGET]["enforcementLevel"] = config.deletion_budget_enforcement
    if tenants_before is not None:
        sections[DELETION_BUDGET][TENANTS_BEFORE] = sorted(set(tenants_before))
    if tenants_excused:
        sections[DELETION_BUDGET][TENANTS_EXCUSED] = sorted(set(tenants_excused))
    return sections


def render_policy_pack_config(
    config: StackConfig,
    *,
    tenants_before: Sequence[str] | None = None,
    tenants_excused: Sequence[str] = (),
) -> str:
    document = policy_pack_config(
        config, tenants_before=tenants_before, tenants_excused=tenants_excused
    )
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_policy_pack_config(
    config: StackConfig,
    path: Path,
    *,
    tenants_before: Sequence[str] | None = None,
    tenants_excused: Sequence[str] = (),
) -> Path:
    """Write the `--policy-pack-config` file for `config` to `path` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        render_policy_pack_config(
            config, tenants_before=tenants_before, tenants_excused=tenants_excused
        )
    )
    return path
