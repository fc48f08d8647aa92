"""Domains put into a database through DomainService, as the tests need them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from core.status import DomainStatus as S
from db.service import DomainService
from db.session import make_engine, make_session_factory


def seed_pending_certificate(database_url: str, domains: Iterable[str]) -> DomainService:
    """Request each domain for a new tenant and take it to pending_certificate.

    Returns the service, on its own engine, that wrote the rows.
    """
    service = DomainService(
        make_session_factory(make_engine(database_url)), base_domain="portal.algapsa.com"
    )
    for domain in domains:
        tenant = uuid.uuid4()
        service.request(tenant, domain, "operator:test")
        service.record_status(
            tenant, expected_status=S.PENDING_DNS, new_status=S.VERIFYING_DNS, message="checking"
        )
        service.record_status(
            tenant,
            expected_status=S.VERIFYING_DNS,
            new_status=S.PENDING_CERTIFICATE,
            message="verified",
        )
    return service
