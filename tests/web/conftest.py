"""A real Chromium (selenium + Debian's chromedriver) against the real server.

The server is tests/support/api.running_api (uvicorn in a thread, the Temporal
dev server for the after-commit hook; no worker polls its task queue, so a
domain stays where a test puts it) on an embedded SQLite database. Statuses
are set through DomainService.record_status along the status graph.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from core.status import DomainStatus
from db.service import DomainService, DomainView
from tests.api.conftest import LocalApi, make_api  # noqa: F401 (the in-process API fixture)
from tests.support.api import ADMIN, RunningApi, api_settings, running_api
from tests.support.browser import chromium

S = DomainStatus
PAGE = "/portal/settings/domain"

# How each status is reached from pending_dns (the failed ones through their check).
PATHS: dict[DomainStatus, tuple[DomainStatus, ...]] = {
    S.PENDING_DNS: (),
    S.VERIFYING_DNS: (S.VERIFYING_DNS,),
    S.DNS_FAILED: (S.VERIFYING_DNS, S.DNS_FAILED),
    S.PENDING_CERTIFICATE: (S.VERIFYING_DNS, S.PENDING_CERTIFICATE),
    S.CERTIFICATE_ISSUING: (S.VERIFYING_DNS, S.PENDING_CERTIFICATE, S.CERTIFICATE_ISSUING),
    S.CERTIFICATE_FAILED: (
        S.VERIFYING_DNS,
        S.PENDING_CERTIFICATE,
        S.CERTIFICATE_ISSUING,
        S.CERTIFICATE_FAILED,
    ),
    S.DEPLOYING: (S.VERIFYING_DNS, S.PENDING_CERTIFICATE, S.CERTIFICATE_ISSUING, S.DEPLOYING),
    S.ACTIVE: (
        S.VERIFYING_DNS,
        S.PENDING_CERTIFICATE,
        S.CERTIFICATE_ISSUING,
        S.DEPLOYING,
        S.ACTIVE,
    ),
}


def host_for(tenant: UUID) -> str:
    return f"portal-{tenant.hex[:10]}.acme.com"


def walk(
    service: DomainService,
    tenant: UUID,
    status: DomainStatus,
    *,
    details: dict[DomainStatus, dict[str, Any]] | None = None,
) -> DomainView:
    """Move the tenant's domain from its current status to `status` along PATHS."""
    view = service.get(tenant)
    if status is S.DISABLED:
        return service.disable(tenant, "user:test")
    for step in PATHS[status]:
        view = service.record_status(
            tenant,
            expected_status=view.status,
            new_status=step,
            message=f"test: now {step}",
            details=(details or {}).get(step),
        )
    return view


@dataclass(frozen=True, kw_only=True)
class Browser:
    driver: webdriver.Chrome
    server: RunningApi

    def open(self, path: str) -> None:
        self.driver.get(self.server.base_url + path)

    def sign_in(self, tenant: UUID | None, role: str = ADMIN, **token_args: Any) -> None:
        token = self.server.token(role=role, tenant=tenant, **token_args)
        self.open(f"/portal/session?token={token}")

    def find(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def present(self, element_id: str) -> bool:
        return bool(self.driver.find_elements(By.ID, element_id))

    def wait(self, predicate: Callable[[webdriver.Chrome], Any], timeout: float = 10) -> Any:
        # A page or region being replaced (after an action, by the poller's swap)
        # leaves stale elements behind; Chromium reports some as a plain
        # WebDriverException ("Node with given id does not belong to the document").
        return WebDriverWait(self.driver, timeout, ignored_exceptions=(WebDriverException,)).until(
            predicate
        )

    def text(self, element_id: str) -> str:
        return self.find(element_id).text


@pytest.fixture(scope="module")
def chrome() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def _server(
    tmp_path_factory: pytest.TempPathFactory, temporal_address: str, edition: str
) -> Iterator[RunningApi]:
    work = tmp_path_factory.mktemp(f"web-{edition}")
    url = f"sqlite:///{Path(work) / 'portal-domains.db'}"
    with running_api(
        database_url=url,
        temporal_address=temporal_address,
        work_dir=work,
        # Many actions per test run: the per-tenant limit is not what these tests are about.
        api=api_settings(edition=edition, rate_limit=1000),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def enterprise(
    tmp_path_factory: pytest.TempPathFactory, temporal_address: str
) -> Iterator[RunningApi]:
    yield from _server(tmp_path_factory, temporal_address, "enterprise")


@pytest.fixture
def browser(chrome: webdriver.Chrome, enterprise: RunningApi) -> Iterator[Browser]:
    chrome.set_window_size(1200, 900)
    yield Browser(driver=chrome, server=enterprise)
    chrome.delete_all_cookies()


@pytest.fixture
def tenant() -> UUID:
    return uuid.uuid4()


def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def signed_in(local: LocalApi, tenant: UUID | None, role: str, sub: str) -> TestClient:
    """An in-process client holding a session from a handover token (no browser)."""
    client = local.client()
    answer = client.get(
        "/portal/session",
        params={"token": local.token(role=role, tenant=tenant, sub=sub)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client
