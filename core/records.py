"""The plain record the rest of the system reconciles from: one tenant's domain.

The database adapter produces these; the stack program, the policy pack and the
export consume them. Frozen so a snapshot handed to Pulumi cannot change under it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.status import DEPLOYABLE, DomainStatus


@dataclass(frozen=True, kw_only=True, order=True)
class DomainRecord:
    tenant_id: str  # canonical lowercase UUID string
    prefix: str  # collision-safe canonical prefix: the tenant's slug everywhere
    domain: str  # validated, normalised (ASCII/punycode) vanity hostname
    canonical_host: str
    certificate_secret_name: str
    status: DomainStatus

    @property
    def deployable(self) -> bool:
        return self.status in DEPLOYABLE
