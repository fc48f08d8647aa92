"""The plain record the rest of the system reconciles from: one tenant's domain.

The database adapter produces these; the stack program, the policy pack and the
export consume them. Frozen so a snapshot handed to Pulumi cannot change under it.

Also the layout of a domain's `verification_details` (JSON), which the
reconciler writes, the database merges and the API and guidance read: one
part per check (`cname`, `challenge_cname`, `caa`, `certificate`), each
replaced whole by its own check, so one check's failure never erases what
another found.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.status import DEPLOYABLE, DomainStatus

# verification_details keys. EXPECTED_CNAME and the legacy flat keys the workflow
# writes ("observed", "record") stay at the top level.
EXPECTED_CNAME = "expected_cname"
# When the current hostname was requested (ISO 8601): time_to_active counts from it.
REQUESTED_AT = "requested_at"
# {"name", "expected", "observed", "ttl", "checked_at", "ok", "error"}
CNAME_CHECK = "cname"
# the same, for `_acme-challenge.<domain>` with DNS-01 delegation
CHALLENGE_CHECK = "challenge_cname"
# {"ok", "message", "checked_at"}
CAA_CHECK = "caa"
# {"ok", "reason", "checked_at"}: why certificate_failed
CERTIFICATE_CHECK = "certificate"
# Keys of a part that change with every check without saying anything new.
_CHECK_TIMES = frozenset({"checked_at", "ttl"})


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


def merge_details(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with the top-level keys of `update` replaced (a part is replaced whole)."""
    return {**copy.deepcopy(dict(current)), **copy.deepcopy(dict(update))}


def without_check_times(details: Mapping[str, Any]) -> dict[str, Any]:
    """`details` without the check times and TTLs: what a repeated check may change silently."""
    return {
        key: (
            {k: v for k, v in value.items() if k not in _CHECK_TIMES}
            if isinstance(value, Mapping)
            else value
        )
        for key, value in details.items()
    }


def cname_lost(status: DomainStatus, details: Mapping[str, Any]) -> bool:
    """An active domain whose last CNAME check found it pointing elsewhere (or nowhere)."""
    check = details.get(CNAME_CHECK)
    return status is DomainStatus.ACTIVE and isinstance(check, Mapping) and check.get("ok") is False
