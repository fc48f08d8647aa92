"""A fixed snapshot of domain records for `portal-domains policy check --fixtures` and tests.

Three active tenants with public vanity hosts; names and secrets come from the
same functions the database layer uses, so the fixtures render exactly like
real rows.
"""

from __future__ import annotations

from core.canonical import canonical_host, certificate_secret_name, choose_prefix, parse_tenant_id
from core.records import DomainRecord
from core.status import DomainStatus

# (tenant id, vanity domain)
_TENANTS: tuple[tuple[str, str], ...] = (
    ("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f", "portal.acme-msp.com"),
    ("7c9e2a40-5b1d-4f3e-8a6c-2d4e6f8a0b1c", "clients.globex-it.net"),
    ("b4d8f6a2-1c3e-4a5b-9d7f-3e5a7c9b1d2f", "support.initech.co.uk"),
)
FIXTURE_BASE_DOMAIN = "portal.algapsa.com"


def fixture_records(base_domain: str = FIXTURE_BASE_DOMAIN) -> list[DomainRecord]:
    records = []
    for tenant_id, domain in _TENANTS:
        uuid = parse_tenant_id(tenant_id)
        prefix = choose_prefix(uuid, taken=())
        records.append(
            DomainRecord(
                tenant_id=str(uuid),
                prefix=prefix,
                domain=domain,
                canonical_host=canonical_host(prefix, base_domain),
                certificate_secret_name=certificate_secret_name(prefix),
                status=DomainStatus.ACTIVE,
            )
        )
    return records
