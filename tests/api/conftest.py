"""The API in process on an embedded SQLite database, for the security tests.

No Temporal and no PostgreSQL: these tests are about what reaches the audit log
and the HTTP layer, and run in a second. `make_api` builds one app per test
with the settings and clock it wants.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.refusals import RefusalAuditor
from api.settings import ApiSettings
from core.settings import Settings
from db import migrate
from db.service import AuditEntry, DomainService
from db.session import make_engine, make_session_factory
from tests.support.api import FakeClock, api_settings, mint_token


@dataclass(frozen=True, kw_only=True)
class LocalApi:
    app: FastAPI
    api: ApiSettings
    service: DomainService
    refusals: RefusalAuditor
    clock: FakeClock

    def token(
        self,
        *,
        role: str,
        tenant: UUID | None = None,
        sub: str = "alice",
        ttl: int = 300,
        **overrides: Any,
    ) -> str:
        return mint_token(self.api, role=role, tenant=tenant, sub=sub, ttl=ttl, **overrides)

    def headers(self, **token_args: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**token_args)}"}

    def client(self, base_url: str = "http://testserver") -> TestClient:
        return TestClient(self.app, base_url=base_url)

    def audit(self, tenant: UUID) -> list[AuditEntry]:
        return self.service.audit_log(tenant)


MakeApi = Callable[..., LocalApi]


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[MakeApi]:
    engines = []

    def make(
        *,
        api_env: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        caller_limit: int = 30,
        window: int = 60,
    ) -> LocalApi:
        home = tmp_path / f"home-{uuid.uuid4().hex[:8]}"
        home.mkdir()
        url = f"sqlite:///{home / 'portal-domains.db'}"
        migrate.upgrade(url)
        settings = Settings.from_env(
            {
                "PORTAL_DOMAINS_HOME": str(home),
                "PORTAL_DOMAINS_DATABASE_URL": url,
                "PORTAL_DOMAINS_START_WORKFLOWS": "off",
                **(env or {}),
            }
        )
        engine = make_engine(url)
        engines.append(engine)
        service = DomainService(make_session_factory(engine), base_domain=settings.base_domain)
        api = api_settings(
            extra={
                "PORTAL_DOMAINS_API_CALLER_RATE_LIMIT": str(caller_limit),
                "PORTAL_DOMAINS_API_AUDIT_WINDOW_SECONDS": str(window),
                **(api_env or {}),
            }
        )
        clock = FakeClock()
        refusals = RefusalAuditor(
            service, per_minute=caller_limit, window_seconds=window, clock=clock
        )
        app = create_app(settings=settings, api=api, service=service, refusals=refusals)
        return LocalApi(app=app, api=api, service=service, refusals=refusals, clock=clock)

    yield make
    for engine in engines:
        engine.dispose()
