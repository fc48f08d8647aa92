"""Run the pack's rules in-process over the documents a run will declare.

The engine runs the same rules (policies/__main__.py) during `pulumi up`, but a
stack rule only reports once every resource has been registered, that is after
the changes were applied. Evaluating the rules here first, over exactly what
the program will declare (core.manifests.desired_documents) and the same pack
config, lets a reconcile refuse before it changes anything without paying for
a separate `pulumi preview` pass. The engine's check during `up` stays on as
the second line of defence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.violations import PolicyViolation
from policies import settings as s
from policies.rules import RULES


@dataclass(frozen=True)
class DeclaredResource:
    """One document as a rule sees a resource: its type, inputs, URN and name."""

    resource_type: str
    props: Mapping[str, Any]
    urn: str
    name: str


@dataclass(frozen=True)
class _ResourceArgs:
    resource_type: str
    props: Mapping[str, Any]
    urn: str
    name: str
    config: Mapping[str, Any]

    def get_config(self) -> Mapping[str, Any]:
        return self.config


@dataclass(frozen=True)
class _StackArgs:
    resources: Sequence[DeclaredResource]
    config: Mapping[str, Any]

    def get_config(self) -> Mapping[str, Any]:
        return self.config


def declared(documents: Sequence[Mapping[str, Any]], *, stack: str) -> list[DeclaredResource]:
    """The documents as resources (URNs shaped like the engine's, for messages)."""
    result = []
    for doc in documents:
        name = str((doc.get("metadata") or {}).get("name") or "")
        kind = str(doc.get("kind") or "")
        resource_type = f"kubernetes:{doc.get('apiVersion')}:{kind}"
        urn = f"urn:pulumi:{stack}::portal-domains::{resource_type}::{kind.lower()}/{name}"
        result.append(DeclaredResource(resource_type, doc, urn, name))
    return result


def evaluate(
    resources: Sequence[DeclaredResource], pack_config: Mapping[str, Mapping[str, Any]]
) -> list[PolicyViolation]:
    """Every violation the pack would report for `resources` under `pack_config`."""
    found: list[PolicyViolation] = []
    for rule in RULES:
        section = dict(pack_config.get(rule.name, {}))
        level = str(section.pop("enforcementLevel", rule.enforcement.value))
        config = {**s.defaults(rule.name), **section}
        if level == "disabled":
            continue

        def report(
            message: str, urn: str | None = None, policy: str = rule.name, level: str = level
        ) -> None:
            found.append(
                PolicyViolation(
                    policy=policy, enforcement_level=level, resource_urn=urn or "", message=message
                )
            )

        if rule.resource is not None:
            for res in resources:
                rule.resource(
                    _ResourceArgs(res.resource_type, res.props, res.urn, res.name, config), report
                )
        elif rule.stack is not None:
            rule.stack(_StackArgs(resources, config), report)
    return found
