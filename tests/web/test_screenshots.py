"""Screenshots of every page at desktop and phone width, written as test artifacts.

The PNGs go to $PORTAL_DOMAINS_TEST_ARTIFACTS when it is set, else to
<repo>/test-artifacts/screenshots/ (ignored by Git). docs/screenshots/ holds two
of them, copied from a run, for the README.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from selenium import webdriver

from core.status import DomainStatus
from tests.support.api import OPERATOR, RunningApi
from tests.web.conftest import Browser, _server
from tests.web.test_settings_page import _put_in

pytestmark = [pytest.mark.browser, pytest.mark.temporal]

S = DomainStatus
REPO = Path(__file__).resolve().parents[2]
# (name, width, height, mobile): the viewport, at device pixel ratio 1.
SIZES = (("desktop", 1280, 900, False), ("phone", 390, 844, True))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The settings page in these statuses, one tenant (and hostname) each.
SETTINGS: dict[str, str] = {
    "pending_dns": "portal.acme.com",
    "active": "clients.globex.io",
    "dns_failed": "help.initech.co.uk",
    "certificate_failed": "portal.umbrella-corp.com",
    "disabled": "portal.hooli.com",
}


def artifacts_dir() -> Path:
    configured = os.environ.get("PORTAL_DOMAINS_TEST_ARTIFACTS")
    where = Path(configured) if configured else REPO / "test-artifacts" / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    return where


def tenant_of(key: str) -> UUID:
    """A fixed tenant per picture, so that the pictures are the same from run to run."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"{key}.screenshots.portal-domains.test")


def png_size(path: Path) -> tuple[int, int]:
    """The width and height in a PNG's IHDR chunk (the first one, right after the signature)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert head[12:16] == b"IHDR", f"{path} has no IHDR chunk first"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def shoot(driver: webdriver.Chrome, name: str) -> list[Path]:
    """Save the page open in `driver` at each size; return the files."""
    where = artifacts_dir()
    files = []
    try:
        for size, width, height, mobile in SIZES:
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            )
            driver.execute_script("window.scrollTo(0, 0)")
            assert driver.execute_script("return document.readyState") == "complete"
            assert driver.execute_script("return window.devicePixelRatio") == 1
            path = where / f"{name}-{size}-{width}x{height}.png"
            path.unlink(missing_ok=True)  # a file left by an earlier run proves nothing
            driver.save_screenshot(str(path))
            assert path.is_file(), f"{path} was not written"
            assert png_size(path) == (width, height), path
            files.append(path)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return files


@pytest.fixture(scope="module")
def community(
    tmp_path_factory: pytest.TempPathFactory, temporal_address: str
) -> Iterator[RunningApi]:
    yield from _server(tmp_path_factory, temporal_address, "community")


@pytest.fixture(scope="module")
def settled(chrome: webdriver.Chrome, enterprise: RunningApi) -> dict[str, UUID]:
    """The enterprise server's tenants, each with its domain in the status of its picture."""
    setup = Browser(driver=chrome, server=enterprise)
    tenants = {}
    for key, host in SETTINGS.items():
        tenants[key] = tenant_of(key)
        _put_in(setup, tenants[key], key, host=host)
    return tenants


@pytest.mark.parametrize("key", list(SETTINGS))
def test_the_settings_page_in_each_status(
    browser: Browser, settled: dict[str, UUID], key: str
) -> None:
    browser.sign_in(settled[key])
    assert browser.find("main").get_attribute("data-status") == key
    if key == "pending_dns":
        assert browser.find("client-portal-domain-dns").is_displayed()
    files = shoot(browser.driver, f"settings-{key}")
    assert len(files) == len(SIZES)


def test_the_community_card(chrome: Any, community: RunningApi) -> None:
    browser = Browser(driver=chrome, server=community)
    try:
        browser.sign_in(tenant_of("community"))
        assert browser.find("client-portal-domain-card").is_displayed()
        shoot(chrome, "settings-community")
    finally:
        chrome.delete_all_cookies()


@pytest.mark.parametrize("page", ["console", "console-tenant", "console-environment"])
def test_the_console_pages(browser: Browser, settled: dict[str, UUID], page: str) -> None:
    # A subject per test: two handover tokens minted in the same second with the same
    # claims are the same token, and a handover token is accepted once.
    browser.sign_in(None, role=OPERATOR, sub=f"ops-{page}")
    assert browser.driver.current_url.endswith("/console")
    path, element = {
        "console": ("/console", "console-domains"),
        "console-tenant": (f"/console/tenants/{settled['active']}", "console-audit"),
        "console-environment": ("/console/environment", "console-stack-health"),
    }[page]
    browser.open(path)
    assert browser.find(element).is_displayed()
    shoot(browser.driver, page)
