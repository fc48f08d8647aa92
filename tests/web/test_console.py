"""The minimal operator console in a real Chromium: domains, filters, counts, a tenant's history."""

from __future__ import annotations

import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait

from core.status import DomainStatus
from db.service import PLATFORM_LOG
from tests.support.api import ADMIN, OPERATOR
from tests.web.conftest import Browser, host_for, walk

pytestmark = [pytest.mark.browser, pytest.mark.temporal]

S = DomainStatus


def _navigate(browser: Browser, element: WebElement) -> None:
    """Click something that loads a new page, and wait until the old one is gone."""
    old = browser.driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser.driver, 10).until(staleness_of(old))
    browser.wait(lambda d: d.execute_script("return document.readyState") == "complete")


def _counts(browser: Browser) -> dict[str, int]:
    bars = browser.driver.find_elements(By.CSS_SELECTOR, "#console-status-chart g.bar")
    return {
        str(bar.get_attribute("data-status")): int(bar.get_attribute("data-count") or -1)
        for bar in bars
    }


def test_operators_see_every_domain_filter_by_status_and_open_a_tenants_history(
    browser: Browser,
) -> None:
    service = browser.server.service
    tenants = {status: uuid.uuid4() for status in (S.PENDING_DNS, S.DNS_FAILED, S.ACTIVE)}
    extra = uuid.uuid4()
    for status, tenant in tenants.items():
        service.request(tenant, host_for(tenant), "user:setup")
        walk(service, tenant, status)
    service.request(extra, host_for(extra), "user:setup")
    # A re-check that changes nothing is in the audit trail, not in the status history.
    service.refresh(tenants[S.ACTIVE], "user:setup")

    browser.sign_in(None, role=OPERATOR, sub="ops")
    assert browser.driver.current_url.endswith("/console")
    counts = _counts(browser)
    assert set(counts) == {s.value for s in DomainStatus}
    assert counts["pending_dns"] == 2
    assert counts["dns_failed"] == 1
    assert counts["active"] == 1
    assert counts["disabled"] == 0
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "#console-domains tbody tr[data-tenant]")
    assert len(rows) == 4

    Select(browser.find("console-status")).select_by_value("pending_dns")
    _navigate(browser, browser.find("console-filter-submit"))
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "#console-domains tbody tr[data-tenant]")
    assert sorted(str(r.get_attribute("data-tenant")) for r in rows) == sorted(
        [str(tenants[S.PENDING_DNS]), str(extra)]
    )
    # Another environment than the server's: nothing.
    browser.open("/console?environment=prod")
    assert not browser.driver.find_elements(By.CSS_SELECTOR, "#console-domains tr[data-tenant]")

    browser.open("/console")
    active = tenants[S.ACTIVE]
    _navigate(
        browser, browser.driver.find_element(By.CSS_SELECTOR, f"tr[data-tenant='{active}'] a")
    )
    assert browser.text("console-tenant-status") == "Active"
    history = [
        li.get_attribute("data-status")
        for li in browser.driver.find_elements(By.CSS_SELECTOR, "#console-status-history li")
    ]
    assert history == [
        "pending_dns",
        "verifying_dns",
        "pending_certificate",
        "certificate_issuing",
        "deploying",
        "active",
    ]
    assert "user:setup" in browser.text("console-audit")


def test_the_console_refuses_tenant_roles_and_audits_it(browser: Browser) -> None:
    tenant = uuid.uuid4()
    browser.sign_in(tenant, role=ADMIN)
    browser.open("/console")
    assert "platform operators only" in browser.driver.page_source
    assert not browser.present("console-domains")
    browser.open(f"/console/tenants/{tenant}")
    assert not browser.present("console-audit")
    denied = [e for e in browser.server.audit(tenant) if e.outcome == "denied"]
    assert [(e.action, e.actor, (e.detail or {}).get("code")) for e in denied] == [
        ("console", "user:alice", "forbidden")
    ]


def test_the_charts_are_drawn_and_recover_answers_in_words(browser: Browser) -> None:
    service = browser.server.service
    tenant = uuid.uuid4()
    service.request(tenant, host_for(tenant), "user:setup")
    walk(service, tenant, S.ACTIVE)

    browser.sign_in(None, role=OPERATOR, sub="ops")
    bar = browser.driver.find_element(
        By.CSS_SELECTOR, f"#console-tta-chart g[data-tenant='{tenant}']"
    )
    assert bar.get_attribute("data-domain") == host_for(tenant)
    # Rendered: the bar has a size on screen, and its label says how long it took.
    rect = bar.find_element(By.TAG_NAME, "rect")
    assert rect.size["width"] > 0
    assert bar.text.endswith((" s", " min"))
    today = browser.driver.find_elements(By.CSS_SELECTOR, "#console-days-chart g.day")[-1]
    assert int(today.get_attribute("data-total") or 0) >= 1
    assert today.find_elements(By.CSS_SELECTOR, "rect[data-status='active']")

    _navigate(browser, browser.find("console-environment-link"))
    assert browser.find("console-stack-health").get_attribute("data-exists") == "no"
    _navigate(browser, browser.find("console-recover"))
    assert "does not exist yet: there is nothing to recover" in browser.text("console-error")
    rows = [e for e in browser.server.audit(PLATFORM_LOG) if e.action == "recover_stack"]
    assert [(e.actor, e.outcome) for e in rows][-1:] == [("operator:ops", "rejected")]
