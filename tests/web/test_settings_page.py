"""The tenant's Client Portal domain settings page in a real Chromium."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from core.status import DomainStatus
from tests.support.api import MEMBER
from tests.web.conftest import PAGE, Browser, _server, host_for, wait_until, walk

pytestmark = [pytest.mark.browser, pytest.mark.temporal]

S = DomainStatus
CHECKED = datetime(2026, 3, 4, 5, 6, tzinfo=UTC).isoformat()


def _request(browser: Browser, tenant: UUID) -> str:
    host = host_for(tenant)
    browser.server.service.request(tenant, host, "user:setup")
    return host


def _fetch(browser: Browser, path: str, *, csrf: bool, accept_json: bool = True) -> Any:
    """POST `path` from the page with fetch(), with or without the page's CSRF token."""
    return browser.driver.execute_async_script(
        """
        const [path, csrf, json, done] = arguments;
        const body = new FormData();
        body.append("domain", "portal-other.acme.com");
        if (csrf) {
          body.append("csrf_token", document.querySelector('meta[name=csrf-token]').content);
        }
        fetch(path, {method: "POST", body, credentials: "same-origin",
                     headers: json ? {"Accept": "application/json"} : {}})
          .then(r => r.text().then(t => done({status: r.status, body: t})));
        """,
        path,
        csrf,
        accept_json,
    )


# ------------------------------------------------------------------ sign-in


def test_handover_sets_an_httponly_samesite_session_cookie_and_redirects(
    browser: Browser, tenant: UUID
) -> None:
    browser.sign_in(tenant)
    assert browser.driver.current_url == browser.server.base_url + PAGE
    cookie = browser.driver.get_cookie("portal_domains_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    # The token is not readable by script, and the page is the tenant's.
    assert "portal_domains_session" not in browser.driver.execute_script("return document.cookie")
    assert browser.text("client-portal-domain-badge") == "No custom domain"


@pytest.mark.parametrize(
    ("token_args", "reason"),
    [
        ({"ttl": -60}, "expired"),
        ({"key": "x" * 16 + "another-secret-of-32-bytes!!"}, "signature"),
        ({"ttl": 3600}, "at most 300 s"),
        ({"aud": "somebody-else"}, "not meant for this API"),
    ],
    ids=["expired", "wrong-key", "long-lived", "wrong-audience"],
)
def test_a_bad_handover_token_is_refused_and_sets_no_cookie(
    browser: Browser, tenant: UUID, token_args: dict[str, Any], reason: str
) -> None:
    browser.sign_in(tenant, **token_args)
    assert "Sign-in failed" in browser.driver.title
    assert reason in browser.driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert browser.driver.get_cookie("portal_domains_session") is None
    browser.open(PAGE)
    assert "Signed out" in browser.driver.title
    assert not browser.present("client-portal-domain-input")


def test_a_handover_token_works_once(browser: Browser, tenant: UUID) -> None:
    token = browser.server.token(role="tenant_admin", tenant=tenant)
    browser.open(f"/portal/session?token={token}")
    assert browser.driver.get_cookie("portal_domains_session") is not None
    browser.driver.delete_all_cookies()
    browser.open(f"/portal/session?token={token}")
    assert "used already" in browser.driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert browser.driver.get_cookie("portal_domains_session") is None


# ------------------------------------------------------------------ actions


def test_admin_submits_a_domain_and_sees_the_toast_and_the_cname_to_create(
    browser: Browser, tenant: UUID
) -> None:
    browser.sign_in(tenant)
    host = host_for(tenant)
    browser.find("client-portal-domain-input").send_keys(host)
    browser.find("client-portal-domain-submit").click()
    # The page again (the toast shows on both: wait for the new one).
    browser.wait(lambda d: d.find_element(By.ID, "main").get_attribute("data-status") != "none")
    browser.wait(lambda d: "Domain submitted" in d.find_element(By.ID, "toast").text)
    assert browser.find("toast").is_displayed()
    assert browser.find("client-portal-domain-status").get_attribute("data-treatment") == (
        "pending_dns"
    )
    assert browser.text("client-portal-domain-badge") == "Pending DNS"
    view = browser.server.service.get(tenant)
    record = browser.find("dns-record-1").get_attribute("value")
    assert record == f"{host}. 3600 IN CNAME {view.canonical_host}."
    # The notice is not left in the address bar for a reload to repeat.
    assert "notice=" not in browser.driver.current_url
    # The API's audit: the same actor string as a bearer-token request.
    changes = [e for e in browser.server.audit(tenant) if e.action == "request"]
    assert [(e.actor, e.outcome) for e in changes] == [("user:alice", "ok")]
    # The copy button copies the record (or selects it), and says so.
    browser.driver.find_element(By.CSS_SELECTOR, "button.copy").click()
    browser.wait(lambda d: d.find_element(By.ID, "toast").text.startswith(("Copied: ", "Press")))
    if browser.text("toast").startswith("Copied: "):
        assert browser.text("toast") == f"Copied: {record}"


def test_an_invalid_hostname_is_explained_in_words_next_to_the_field(
    browser: Browser, tenant: UUID
) -> None:
    browser.sign_in(tenant)
    browser.find("client-portal-domain-input").send_keys("acme.com")
    browser.find("client-portal-domain-submit").click()
    browser.wait(lambda d: d.find_element(By.ID, "client-portal-domain-error").is_displayed())
    sentence = "Use a subdomain such as portal.yourcompany.com: a bare domain cannot be a CNAME."
    assert browser.text("client-portal-domain-error") == sentence
    assert browser.text("toast-error") == sentence
    field = browser.find("client-portal-domain-input")
    assert field.get_attribute("aria-invalid") == "true"
    assert browser.driver.switch_to.active_element == field
    assert field.get_attribute("value") == "acme.com"


def test_refresh_retry_and_remove_act_through_the_service(browser: Browser, tenant: UUID) -> None:
    _request(browser, tenant)
    walk(browser.server.service, tenant, S.DNS_FAILED)
    browser.sign_in(tenant)
    retry = browser.find("client-portal-domain-refresh")
    assert retry.text == "Retry registration"
    retry.click()
    browser.wait(
        lambda d: d.find_element(By.ID, "main").get_attribute("data-status") != "dns_failed"
    )
    browser.wait(lambda d: "Registration restarted" in d.find_element(By.ID, "toast").text)
    assert browser.text("client-portal-domain-badge") == "Pending DNS"
    assert browser.server.service.get(tenant).status is S.PENDING_DNS
    browser.find("client-portal-domain-remove").click()
    browser.wait(ec.alert_is_present())
    browser.driver.switch_to.alert.accept()
    browser.wait(lambda d: d.find_element(By.ID, "main").get_attribute("data-status") == "disabled")
    browser.wait(lambda d: "Custom domain removed" in d.find_element(By.ID, "toast").text)
    assert browser.text("client-portal-domain-badge") == "Disabled"
    assert browser.server.service.get(tenant).status is S.DISABLED
    actions = [(e.action, e.actor) for e in browser.server.audit(tenant) if e.outcome == "ok"]
    assert ("refresh", "user:alice") in actions
    assert ("disable", "user:alice") in actions


def test_declining_the_remove_confirmation_changes_nothing(browser: Browser, tenant: UUID) -> None:
    _request(browser, tenant)
    browser.sign_in(tenant)
    browser.find("client-portal-domain-remove").click()
    browser.wait(ec.alert_is_present())
    browser.driver.switch_to.alert.dismiss()
    time.sleep(0.3)
    assert browser.server.service.get(tenant).status is S.PENDING_DNS


# ------------------------------------------------------------------ the status matrix

# status -> (banner tone, badge, buttons offered, refresh label)
MATRIX: dict[str, tuple[str, str, set[str], str | None]] = {
    "none": ("neutral", "No custom domain", {"submit"}, None),
    "pending_dns": ("info", "Pending DNS", {"submit", "refresh", "remove"}, "Refresh"),
    "verifying_dns": ("info", "Verifying DNS", {"submit", "refresh", "remove"}, "Refresh"),
    "dns_failed": (
        "error",
        "DNS failed",
        {"submit", "refresh", "remove"},
        "Retry registration",
    ),
    "pending_certificate": (
        "info",
        "Pending certificate",
        {"submit", "refresh", "remove"},
        "Refresh",
    ),
    "certificate_issuing": (
        "info",
        "Issuing certificate",
        {"submit", "refresh", "remove"},
        "Refresh",
    ),
    "certificate_failed": (
        "error",
        "Certificate failed",
        {"submit", "refresh", "remove"},
        "Retry registration",
    ),
    "deploying": ("info", "Deploying", {"submit", "refresh", "remove"}, "Refresh"),
    "active": ("success", "Active", {"refresh", "remove"}, "Refresh"),
    "cname_lost": ("warning", "CNAME changed", {"refresh", "remove"}, "Refresh"),
    "disabled": ("neutral", "Disabled", {"submit"}, None),
}
_POLLING = {"pending_dns", "verifying_dns", "pending_certificate", "certificate_issuing"}
_POLLING |= {"deploying"}


def _put_in(browser: Browser, tenant: UUID, key: str, host: str | None = None) -> str:
    if key == "none":
        return ""
    host = host or host_for(tenant)
    browser.server.service.request(tenant, host, "user:setup")
    service = browser.server.service
    if key == "cname_lost":
        view = walk(service, tenant, S.ACTIVE)
        service.record_status(
            tenant,
            expected_status=S.ACTIVE,
            new_status=S.ACTIVE,
            message="test: the CNAME moved",
            details={
                "cname": {
                    "name": host,
                    "expected": view.canonical_host,
                    "observed": "elsewhere.example.net",
                    "ttl": 300,
                    "checked_at": CHECKED,
                    "ok": False,
                    "error": None,
                }
            },
        )
        return host
    details = {
        S.DNS_FAILED: {
            "cname": {
                "name": host,
                "expected": "whatever",
                "observed": "old-provider.example.net",
                "ttl": 1800,
                "checked_at": CHECKED,
                "ok": False,
                "error": None,
            }
        },
        S.CERTIFICATE_FAILED: {
            "certificate": {
                "ok": False,
                "reason": "Failed to finalize Order: 429 rateLimited",
                "checked_at": CHECKED,
            }
        },
    }
    walk(service, tenant, DomainStatus(key), details=details)
    return host


@pytest.mark.parametrize("key", list(MATRIX))
def test_each_status_has_its_treatment(browser: Browser, tenant: UUID, key: str) -> None:
    tone, badge, offered, refresh_label = MATRIX[key]
    host = _put_in(browser, tenant, key)
    browser.sign_in(tenant)
    banner = browser.find("client-portal-domain-status")
    assert banner.get_attribute("data-treatment") == key
    assert f"banner-{tone}" in (banner.get_attribute("class") or "").split()
    assert browser.text("client-portal-domain-badge") == badge
    buttons = {
        name
        for name in ("submit", "refresh", "remove")
        if browser.present(f"client-portal-domain-{name}")
    }
    assert buttons == offered
    if refresh_label is not None:
        assert browser.text("client-portal-domain-refresh") == refresh_label
    main = browser.find("main")
    assert main.get_attribute("data-polling") == ("true" if key in _POLLING else "false")
    facts = banner.text
    if host:
        assert host in facts
        assert browser.server.service.get(tenant).canonical_host in facts
    if key == "active":
        assert "Last verified" in facts
    if key == "dns_failed":
        assert "Last resolved target\nold-provider.example.net" in facts
        assert "Suggested wait\nabout 30 minutes (the record's TTL, 1800 s)" in facts
    if key == "certificate_failed":
        assert "cert-manager reported\nFailed to finalize Order: 429 rateLimited" in facts
        assert "Reported at\n2026-03-04 05:06 UTC" in facts
    if key == "cname_lost":
        assert "Now points to\nelsewhere.example.net" in facts
    if key == "disabled":
        assert "being removed" in browser.text("client-portal-domain-removal")


# ------------------------------------------------------------------ RBAC and CSRF


def test_a_member_sees_the_page_read_only_and_the_server_refuses_its_changes(
    browser: Browser, tenant: UUID
) -> None:
    _request(browser, tenant)
    browser.sign_in(tenant, role=MEMBER, sub="bob")
    assert browser.text("client-portal-domain-badge") == "Pending DNS"
    for name in ("input", "submit", "refresh", "remove"):
        assert not browser.present(f"client-portal-domain-{name}")
    assert "only a tenant administrator" in browser.text("client-portal-domain-read-only")
    answer = _fetch(browser, PAGE + "/refresh", csrf=True)
    assert answer["status"] == 403
    assert '"code":"forbidden"' in answer["body"]
    denied = [e for e in browser.server.audit(tenant) if e.outcome == "denied"]
    assert [(e.action, e.actor) for e in denied] == [("refresh", "user:bob")]


@pytest.mark.parametrize("accept_json", [True, False], ids=["fetch", "form"])
def test_a_post_without_the_csrf_token_is_refused_and_audited(
    browser: Browser, tenant: UUID, accept_json: bool
) -> None:
    _request(browser, tenant)
    browser.sign_in(tenant)
    answer = _fetch(browser, PAGE + "/remove", csrf=False, accept_json=accept_json)
    assert answer["status"] == 403
    assert browser.server.service.get(tenant).status is S.PENDING_DNS
    denied = [e for e in browser.server.audit(tenant) if e.outcome == "denied"]
    assert [(e.action, e.actor, (e.detail or {}).get("code")) for e in denied] == [
        ("disable", "user:alice", "csrf_failed")
    ]
    # With the token the same request goes through.
    assert _fetch(browser, PAGE + "/remove", csrf=True)["status"] == 200
    assert browser.server.service.get(tenant).status is S.DISABLED


# ------------------------------------------------------------------ layout


@pytest.mark.parametrize("key", ["none", "dns_failed", "certificate_failed", "cname_lost"])
def test_a_phone_width_screen_needs_no_horizontal_scrolling(
    browser: Browser, tenant: UUID, key: str
) -> None:
    # A long hostname (61-character labels) must wrap, not widen the page.
    # (no hyphens: a browser may break a line after one).
    label = f"customerportalofacompanywithaverylongname{tenant.hex[:20]}"
    _put_in(browser, tenant, key, host=f"{label}.{label[::-1]}.acme.com")
    browser.sign_in(tenant)
    browser.driver.set_window_size(390, 844)
    width = browser.driver.execute_script("return window.innerWidth")
    assert width <= 400
    scroll, client = browser.driver.execute_script(
        "const e = document.documentElement; return [e.scrollWidth, e.clientWidth];"
    )
    assert scroll <= client
    # Every button is reachable and big enough to tap.
    for button in browser.driver.find_elements(By.CSS_SELECTOR, "button:not([hidden])"):
        rect = button.rect
        assert rect["x"] + rect["width"] <= client
        assert rect["height"] >= 44


def test_inputs_have_labels_and_the_focus_order_follows_the_page(
    browser: Browser, tenant: UUID
) -> None:
    _request(browser, tenant)
    browser.sign_in(tenant)
    for element in browser.driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden])"):
        element_id = element.get_attribute("id")
        labels = browser.driver.find_elements(By.CSS_SELECTOR, f"label[for='{element_id}']")
        assert labels, element_id
    order = browser.driver.execute_script(
        """
        const ids = [];
        for (const el of document.querySelectorAll('a[href], input:not([type=hidden]), button')) {
          if (!el.hidden && el.tabIndex >= 0) ids.push(el.id || el.className);
        }
        return ids;
        """
    )
    assert order[:5] == [
        "skip",
        "client-portal-domain-input",
        "client-portal-domain-submit",
        "client-portal-domain-refresh",
        "client-portal-domain-remove",
    ]


# ------------------------------------------------------------------ polling

# Runs before the page's scripts: records each timer the page asks for (and runs
# the 15 s ones after 200 ms) and counts the status polls across reloads.
_POLL_SPY = """
(() => {
  const store = window.sessionStorage;
  const realTimeout = window.setTimeout.bind(window);
  window.setTimeout = (fn, delay, ...rest) => {
    const delays = JSON.parse(store.getItem('spy-delays') || '[]');
    delays.push(delay);
    store.setItem('spy-delays', JSON.stringify(delays));
    return realTimeout(fn, delay >= 15000 ? 200 : delay, ...rest);
  };
  const realFetch = window.fetch.bind(window);
  window.spyPollsHere = 0;
  window.fetch = (url, ...rest) => {
    if (String(url).includes('/status')) {
      store.setItem('spy-polls', String(Number(store.getItem('spy-polls') || '0') + 1));
      window.spyPollsHere += 1;
    }
    return realFetch(url, ...rest);
  };
})();
"""


def _polls(browser: Browser) -> int:
    return int(browser.driver.execute_script("return sessionStorage.getItem('spy-polls') || 0"))


def test_the_page_polls_every_15_s_until_the_status_is_terminal(
    browser: Browser, tenant: UUID
) -> None:
    _request(browser, tenant)
    spy = browser.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": _POLL_SPY}
    )
    try:
        browser.sign_in(tenant)
        wait_until(lambda: _polls(browser) >= 3)
        delays = browser.driver.execute_script("return JSON.parse(sessionStorage['spy-delays'])")
        assert set(delays) == {15000}
        assert browser.find("main").get_attribute("data-poll-state") in ("scheduled", "polling")
        # The domain moves on: the page re-renders on the next poll, and goes on polling.
        walk(browser.server.service, tenant, S.VERIFYING_DNS)
        browser.wait(
            lambda d: (
                d.find_element(By.ID, "main").get_attribute("data-status") == ("verifying_dns")
            )
        )
        # Terminal: the page shows it and stops.
        view = browser.server.service.get(tenant)
        browser.server.service.record_status(
            tenant,
            expected_status=view.status,
            new_status=S.DNS_FAILED,
            message="test: no CNAME",
        )
        browser.wait(
            lambda d: d.find_element(By.ID, "main").get_attribute("data-status") == "dns_failed"
        )
        browser.wait(
            lambda d: d.find_element(By.ID, "main").get_attribute("data-poll-state") == "stopped"
        )
        settled = _polls(browser)
        time.sleep(1.5)  # more than seven spy-shortened intervals
        assert _polls(browser) == settled
        # Every poll was asked by the page that was opened: it was never loaded again.
        assert browser.driver.execute_script("return window.spyPollsHere") == settled
        assert browser.text("client-portal-domain-badge") == "DNS failed"
    finally:
        browser.driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": spy["identifier"]}
        )


def _no_reload(browser: Browser) -> tuple[int | None, int, float]:
    """This document's marker, its navigation entries and when it was loaded.

    A reload (or any navigation) drops the marker and starts a new time origin; the
    navigation entries of a document are always one, for the load that made it.
    """
    marker, navigations, origin = browser.driver.execute_script(
        "return [window.__noReload || null, performance.getEntriesByType('navigation').length,"
        " performance.timeOrigin];"
    )
    return marker, navigations, origin


def _badge_reads(text: str) -> Callable[[Any], bool]:
    return lambda d: bool(d.find_element(By.ID, "client-portal-domain-badge").text == text)


def test_an_admin_requests_a_domain_and_watches_it_become_active_without_a_reload(
    browser: Browser, tenant: UUID
) -> None:
    spy = browser.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": _POLL_SPY}
    )
    try:
        browser.sign_in(tenant)
        host = host_for(tenant)
        browser.find("client-portal-domain-input").send_keys(host)
        browser.find("client-portal-domain-submit").click()
        browser.wait(
            lambda d: d.find_element(By.ID, "main").get_attribute("data-status") == "pending_dns"
        )
        address = browser.driver.current_url
        # From here on this document must stay: a reload would drop the marker.
        browser.driver.execute_script("window.__noReload = 1;")
        loaded = _no_reload(browser)
        assert loaded[:2] == (1, 1)
        assert browser.find("client-portal-domain-dns").is_displayed()
        service = browser.server.service
        view = service.get(tenant)
        steps = [
            (S.VERIFYING_DNS, "Verifying DNS"),
            (S.PENDING_CERTIFICATE, "Pending certificate"),
            (S.CERTIFICATE_ISSUING, "Issuing certificate"),
            (S.DEPLOYING, "Deploying"),
            (S.ACTIVE, "Active"),
        ]
        for status, badge in steps:
            view = service.record_status(
                tenant, expected_status=view.status, new_status=status, message=f"test: {status}"
            )
            browser.wait(_badge_reads(badge))
            assert browser.find("main").get_attribute("data-status") == status.value
            assert _no_reload(browser) == loaded
        # The whole status region is the new one, not only the badge.
        banner = browser.find("client-portal-domain-status")
        assert banner.get_attribute("data-treatment") == "active"
        assert "banner-success" in (banner.get_attribute("class") or "").split()
        assert "Last verified" in banner.text
        assert not browser.present("client-portal-domain-polling")
        # Active is terminal: polling stops, in the same document at the same address.
        browser.wait(
            lambda d: d.find_element(By.ID, "main").get_attribute("data-poll-state") == "stopped"
        )
        polls = browser.driver.execute_script("return window.spyPollsHere")
        time.sleep(1.0)  # five spy-shortened intervals
        assert browser.driver.execute_script("return window.spyPollsHere") == polls
        assert _no_reload(browser) == loaded
        assert browser.driver.current_url == address
        # The swapped-in actions work: Remove goes through the service.
        assert browser.text("client-portal-domain-refresh") == "Refresh"
        browser.find("client-portal-domain-remove").click()
        browser.wait(ec.alert_is_present())
        browser.driver.switch_to.alert.accept()
        browser.wait(
            lambda d: d.find_element(By.ID, "main").get_attribute("data-status") == "disabled"
        )
        assert service.get(tenant).status is S.DISABLED
    finally:
        browser.driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": spy["identifier"]}
        )


# ------------------------------------------------------------------ community edition


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory, temporal_address: str) -> Any:
    yield from _server(tmp_path_factory, temporal_address, "community")


def test_the_community_edition_shows_a_read_only_card_with_the_default_address(
    chrome: Any, community: Any, tenant: UUID
) -> None:
    browser = Browser(driver=chrome, server=community)
    try:
        browser.sign_in(tenant)
        card = browser.find("client-portal-domain-card")
        assert "Enterprise edition" in card.text
        assert browser.text("client-portal-domain-badge") == "Enterprise feature"
        default = card.find_element(By.TAG_NAME, "code").text
        assert default.startswith(f"https://{tenant.hex[:7]}.")
        for name in ("input", "submit", "refresh", "remove", "status"):
            assert not browser.present(f"client-portal-domain-{name}")
        answer = _fetch(browser, PAGE, csrf=True)
        assert answer["status"] == 403
        assert '"code":"edition_not_supported"' in answer["body"]
    finally:
        chrome.delete_all_cookies()


# ------------------------------------------------------------------ contrast

# Every visible text's WCAG 2 contrast against the background it is drawn on
# (the nearest ancestor with an opaque background), as the browser computed them.
_CONTRASTS = """
const parse = (c) => {
  const m = c.match(/[\\d.]+/g).map(Number);
  return m.length > 3 ? m : [...m, 1];
};
const lum = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (el) => {
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c[3] >= 1) return c;
  }
  return [255, 255, 255, 1];
};
const out = [];
for (const el of document.querySelectorAll('body *')) {
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  const style = getComputedStyle(el);
  if (!own || style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
  const [a, b] = [lum(parse(style.color)), lum(background(el))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
  const large = size >= 24 || (bold && size >= 18.66);
  out.push([el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className, ratio, large,
            el.textContent.trim().slice(0, 40)]);
}
return out;
"""


@pytest.mark.parametrize("status", [S.PENDING_DNS, S.DNS_FAILED, S.CERTIFICATE_FAILED, S.ACTIVE])
def test_every_text_meets_wcag_aa_contrast(
    browser: Browser, tenant: UUID, status: DomainStatus
) -> None:
    _request(browser, tenant)
    walk(browser.server.service, tenant, status)
    browser.sign_in(tenant)
    browser.wait(lambda d: d.execute_script("return document.readyState") == "complete")
    measured = browser.driver.execute_script(_CONTRASTS)
    assert len(measured) > 10  # the page's texts were found
    weak = [
        (where, round(ratio, 2), text)
        for where, ratio, large, text in measured
        if ratio < (3.0 if large else 4.5)
    ]
    assert weak == []
