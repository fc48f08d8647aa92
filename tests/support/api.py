"""Run the REST API for real: uvicorn on a free loopback port, a migrated database,
the after-commit hook pointed at the Temporal dev server.

`running_api` is a context manager; test modules wrap it in fixtures of the
scope they need. Tokens are minted with the server's own HS256 secret (or any
other key a test wants to try).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jwt
import uvicorn
from fastapi import FastAPI

from api.app import DOMAIN_PATH, create_app
from api.ratelimit import TenantRateLimiter
from api.settings import ApiSettings
from core.settings import Settings
from db import migrate
from db.service import AuditEntry, DomainService
from db.session import make_engine, make_session_factory
from loopback.temporal import free_port
from reconciler.outbox import BackgroundDispatcher
from reconciler.wiring import signal_dispatcher, workflow_hook
from tests.support.timings import TEST_TIMINGS_SETTING

ADMIN = "tenant_admin"
MEMBER = "tenant_member"
OPERATOR = "platform_operator"
AUDIENCE = "portal-domains-test"
ISSUER = "https://issuer.test"


def mint_token(
    api: ApiSettings,
    *,
    role: str | None,
    tenant: UUID | None = None,
    sub: str | int | None = "alice",
    ttl: float = 300,
    key: str | None = None,
    algorithm: str = "HS256",
    **overrides: Any,
) -> str:
    """A JWT for `api`: signed with its secret unless `key` says otherwise.

    `overrides` replace or add claims; a claim set to None is left out.
    """
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "aud": api.jwt_audience,
        "iss": api.jwt_issuer,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        # Unique per token, as a host application's would be: two tokens minted in
        # the same second with the same claims must not be one single-use handover.
        "jti": uuid.uuid4().hex,
    }
    if tenant is not None:
        claims["tenant_id"] = str(tenant)
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key or api.jwt_key, algorithm=algorithm)


class FakeClock:
    """A monotonic clock for rate limiters that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def dns01_stack_dir(stack_dir: Path) -> Path:
    """Create `stack_dir` holding a staging stack that issues by DNS-01 delegation.

    Point PORTAL_DOMAINS_STACK_CONFIG_DIR at the result.
    """
    stack_dir.mkdir()
    (stack_dir / "Pulumi.staging.yaml").write_text(
        "config:\n"
        "  portal-domains:acmeSolver: dns01\n"
        "  portal-domains:acmeDns01Zone: acme.portal.algapsa.com\n"
        "  portal-domains:acmeRfc2136Nameserver: 10.96.0.53:53\n"
        "  portal-domains:acmeRfc2136TsigKeyName: portal-acme-update\n"
        "  portal-domains:acmeRfc2136TsigSecret: acme-dns-tsig\n"
    )
    return stack_dir


@dataclass(frozen=True, kw_only=True)
class RunningApi:
    base_url: str
    settings: Settings
    api: ApiSettings
    service: DomainService

    @property
    def domain_url(self) -> str:
        return self.base_url + DOMAIN_PATH

    def token(
        self,
        *,
        role: str | None,
        tenant: UUID | None = None,
        sub: str | int | None = "alice",
        ttl: float = 300,
        key: str | None = None,
        algorithm: str = "HS256",
        **overrides: Any,
    ) -> str:
        return mint_token(
            self.api,
            role=role,
            tenant=tenant,
            sub=sub,
            ttl=ttl,
            key=key,
            algorithm=algorithm,
            **overrides,
        )

    def headers(self, **token_args: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**token_args)}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)

    def audit(self, tenant: UUID) -> list[AuditEntry]:
        return self.service.audit_log(tenant)


def api_settings(
    *, edition: str = "enterprise", rate_limit: int = 10, extra: Mapping[str, str] | None = None
) -> ApiSettings:
    env = {
        "PORTAL_DOMAINS_JWT_KEY": secrets.token_hex(32),
        "PORTAL_DOMAINS_JWT_AUDIENCE": AUDIENCE,
        "PORTAL_DOMAINS_JWT_ISSUER": ISSUER,
        "PORTAL_DOMAINS_JWT_LEEWAY_SECONDS": "0",
        "PORTAL_DOMAINS_EDITION": edition,
        "PORTAL_DOMAINS_API_RATE_LIMIT": str(rate_limit),
        **(extra or {}),
    }
    return ApiSettings.from_env(env)


def process_settings(
    *,
    database_url: str,
    temporal_address: str,
    work_dir: Path,
    extra: Mapping[str, str] | None = None,
) -> Settings:
    return Settings.from_env(
        {
            **(extra or {}),
            "PORTAL_DOMAINS_HOME": str(work_dir),
            "PORTAL_DOMAINS_DATABASE_URL": database_url,
            "PORTAL_DOMAINS_TEMPORAL_ADDRESS": temporal_address,
            # Unique per server: no worker polls it, and no other test sees its workflows.
            "PORTAL_DOMAINS_TASK_QUEUE": f"api-test-{uuid.uuid4().hex[:12]}",
            "PORTAL_DOMAINS_START_WORKFLOWS": "on",
            "PORTAL_DOMAINS_TIMINGS": TEST_TIMINGS_SETTING,
        }
    )


@contextmanager
def running_api(
    *,
    database_url: str,
    temporal_address: str,
    work_dir: Path,
    api: ApiSettings | None = None,
    rate_limiter: TenantRateLimiter | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[RunningApi]:
    migrate.upgrade(database_url)
    settings = process_settings(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=work_dir,
        extra=extra_env,
    )
    api = api or api_settings()
    engine = make_engine(database_url)
    dispatchers: list[BackgroundDispatcher] = []

    def wake() -> None:
        for dispatcher in dispatchers:
            dispatcher.nudge()

    service = DomainService(
        make_session_factory(engine),
        base_domain=settings.base_domain,
        on_committed=workflow_hook(settings, deliver=wake),
        outbox=True,
    )
    dispatchers.append(BackgroundDispatcher(signal_dispatcher(settings, service)))
    dispatchers[0].start()
    app = create_app(settings=settings, api=api, service=service, rate_limiter=rate_limiter)
    try:
        with serving(app) as base_url:
            yield RunningApi(base_url=base_url, settings=settings, api=api, service=service)
    finally:
        dispatchers[0].stop()
        engine.dispose()


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, on a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on port {port}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    code: str = body["error"]["code"]
    return code
