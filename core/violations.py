"""A policy violation as data, from the engine's policy event to every reader.

The stack wrapper builds these from Pulumi's policy events; the CLI, the
workflow outcome and the run summaries carry them as they are, so nobody
parses a violation back out of a message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class PolicyViolation:
    policy: str  # the rule's name, e.g. certificate-in-gateway-namespace
    enforcement_level: str  # mandatory / advisory / remediate / disabled, as the engine says
    resource_urn: str  # empty for stack-level rules
    message: str

    @property
    def mandatory(self) -> bool:
        return self.enforcement_level == "mandatory"

    def line(self) -> str:
        return f"[{self.enforcement_level}] {self.policy}: {self.message}"
