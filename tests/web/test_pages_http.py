"""The settings page over plain HTTP (no JavaScript): forms, headers, sessions, refusals.

In process on SQLite (tests/api/conftest.py's make_api): what a browser without
JavaScript gets, and what the browser tests cannot see (response headers,
tampered cookies, the platform log).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest

from api.app import create_app
from api.auth import AuthError
from api.settings import ApiSettings
from api.web.session import SESSION_COOKIE, Sessions
from api.web.settings import WebSettings
from core.settings import SettingsError
from db.service import PLATFORM_LOG
from tests.api.conftest import LocalApi, MakeApi
from tests.support.api import api_settings, dns01_stack_dir
from tests.web.conftest import signed_in

PAGE = "/portal/settings/domain"


def _signed_in(
    local: LocalApi, tenant: UUID | None, role: str = "tenant_admin", sub: str = "alice"
) -> Any:
    return signed_in(local, tenant, role, sub)


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_html_answers_carry_a_strict_csp_and_the_security_headers(make_api: MakeApi) -> None:
    local = make_api()
    client = _signed_in(local, uuid.uuid4())
    page = client.get(PAGE)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "form-action 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    # No inline script or style: every script and stylesheet comes from our static path.
    assert "<script>" not in page.text
    assert "style=" not in page.text
    assert re.findall(r'<script src="([^"]+)"', page.text) == ["/portal/static/app.js"]
    assert client.get("/portal/static/app.js").status_code == 200


def test_the_frame_ancestors_follow_the_setting(make_api: MakeApi) -> None:
    local = make_api()
    web = replace(WebSettings.derived(local.api), frame_ancestors=("https://app.example.com",))
    app = create_app(
        settings=local.app.state.gatekeeper.settings,
        api=local.api,
        service=local.service,
        web=web,
    )
    framed = LocalApi(
        app=app, api=local.api, service=local.service, refusals=local.refusals, clock=local.clock
    )
    page = _signed_in(framed, uuid.uuid4()).get(PAGE)
    assert "frame-ancestors https://app.example.com" in page.headers["content-security-policy"]


def test_without_javascript_a_form_post_redirects_to_the_page_with_its_notice(
    make_api: MakeApi,
) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    client = _signed_in(local, tenant)
    token = _csrf(client.get(PAGE))
    answer = client.post(
        PAGE, data={"domain": "portal.acme.com", "csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{PAGE}?notice=requested"
    page = client.get(answer.headers["location"])
    assert "Domain submitted." in page.text
    assert 'data-treatment="pending_dns"' in page.text
    assert local.service.get(tenant).domain == "portal.acme.com"


def test_without_javascript_an_error_renders_the_page_with_the_reason_and_the_input(
    make_api: MakeApi,
) -> None:
    local = make_api()
    client = _signed_in(local, uuid.uuid4())
    token = _csrf(client.get(PAGE))
    answer = client.post(PAGE, data={"domain": "<b>acme</b>.com", "csrf_token": token})
    assert answer.status_code == 422
    assert "Use only letters, digits, hyphens and dots in the hostname." in answer.text
    # The input comes back, escaped.
    assert 'value="&lt;b&gt;acme&lt;/b&gt;.com"' in answer.text
    assert "<b>acme" not in answer.text
    assert 'aria-invalid="true"' in answer.text


def test_a_tampered_or_foreign_session_cookie_is_not_a_session(make_api: MakeApi) -> None:
    local = make_api()
    client = _signed_in(local, uuid.uuid4())
    cookie = client.cookies[SESSION_COOKIE]
    body, signature = cookie.split(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + signature
    client.cookies.set(SESSION_COOKIE, forged)
    assert client.get(PAGE).status_code == 401
    # A cookie from another server (another key) neither.
    other = make_api()
    stranger = other.client()
    stranger.cookies.set(SESSION_COOKIE, cookie)
    assert stranger.get(PAGE).status_code == 401


def test_a_post_without_a_session_is_refused_and_audited_in_the_platform_log(
    make_api: MakeApi,
) -> None:
    local = make_api()
    answer = local.client().post(
        PAGE + "/remove", data={"csrf_token": "x"}, headers={"Accept": "application/json"}
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "session_expired"
    denied = [e for e in local.audit(PLATFORM_LOG) if e.action == "disable"]
    assert [(e.outcome, (e.detail or {}).get("code")) for e in denied] == [
        ("denied", "session_expired")
    ]


def test_a_refused_handover_is_audited_in_the_platform_log(make_api: MakeApi) -> None:
    local = make_api()
    answer = local.client().get(
        "/portal/session", params={"token": local.token(role="tenant_admin", ttl=-5)}
    )
    assert answer.status_code == 401
    codes = [(e.detail or {}).get("code") for e in local.audit(PLATFORM_LOG)]
    assert codes == ["token_expired"]


def test_the_csrf_token_of_one_session_does_not_pass_for_another(make_api: MakeApi) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    first = _signed_in(local, tenant)
    second = _signed_in(local, tenant, sub="alice-again")
    token = _csrf(first.get(PAGE))
    answer = second.post(
        PAGE, data={"domain": "portal.acme.com", "csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert "This form has expired" in answer.text


def test_an_operator_names_the_tenant_and_acts_as_operator(make_api: MakeApi) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    client = _signed_in(local, None, role="platform_operator")
    assert client.get(PAGE).status_code == 422
    page = client.get(PAGE, params={"tenant_id": str(tenant)})
    assert page.status_code == 200
    assert f'action="{PAGE}?tenant_id={tenant}"' in page.text
    answer = client.post(
        PAGE,
        params={"tenant_id": str(tenant)},
        data={"domain": "portal.acme.com", "csrf_token": _csrf(page)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{PAGE}?notice=requested&tenant_id={tenant}"
    actors = [e.actor for e in local.audit(tenant) if e.action == "request"]
    assert actors == ["operator:alice"]


def test_an_environment_with_dns01_delegation_shows_both_records(
    make_api: MakeApi, tmp_path: Path
) -> None:
    stacks = dns01_stack_dir(tmp_path / "stacks")
    local = make_api(env={"PORTAL_DOMAINS_STACK_CONFIG_DIR": str(stacks)})
    tenant = uuid.uuid4()
    local.service.request(tenant, "portal.acme.com", "user:setup")
    page = _signed_in(local, tenant).get(PAGE)
    records = re.findall(r'class="dns-record" type="text" readonly value="([^"]+)"', page.text)
    prefix = local.service.get(tenant).canonical_prefix
    assert records == [
        f"portal.acme.com. 3600 IN CNAME {prefix}.portal.algapsa.com.",
        f"_acme-challenge.portal.acme.com. 3600 IN CNAME {prefix}.acme.portal.algapsa.com.",
    ]
    assert "DNS records</h2>" in page.text


# ------------------------------------------------------------------ sessions and settings


def _handover_token(api: ApiSettings, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": "alice",
        "role": "tenant_admin",
        "tenant_id": str(uuid.uuid4()),
        "aud": api.jwt_audience,
        "iss": api.jwt_issuer,
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    return jwt.encode({k: v for k, v in body.items() if v is not None}, api.jwt_key, "HS256")


def test_a_session_ends_at_its_expiry() -> None:
    api = api_settings()
    web = WebSettings.derived(api)
    now = [time.time()]
    sessions = Sessions(web, api, clock=lambda: now[0])
    session = sessions.handover(_handover_token(api))
    cookie = sessions.encode(session)
    assert sessions.decode(cookie) == session
    now[0] += web.session_seconds
    assert sessions.decode(cookie) is None


def test_a_handover_token_needs_iat() -> None:
    api = api_settings()
    sessions = Sessions(WebSettings.derived(api), api)
    with pytest.raises(AuthError, match="must carry 'iat'"):
        sessions.handover(_handover_token(api, iat=None))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORTAL_DOMAINS_WEB_SESSION_KEY": "short"}, "at least 32 bytes"),
        ({"PORTAL_DOMAINS_WEB_FRAME_ANCESTORS": "javascript:alert(1)"}, "frame_ancestors"),
        ({"PORTAL_DOMAINS_WEB_FRAME_ANCESTORS": "'none' https://a.example"}, "'none' cannot"),
        ({"PORTAL_DOMAINS_WEB_SESSION_SECONDS": "5"}, "out of range"),
    ],
)
def test_bad_web_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        WebSettings.from_env(api_settings(), env)


def test_the_session_key_is_derived_from_the_hs256_secret_not_equal_to_it() -> None:
    api = api_settings()
    web = WebSettings.from_env(api, {})
    assert web.session_key == WebSettings.derived(api).session_key
    assert web.session_key != api.jwt_key.encode()
    own = "0123456789abcdef" * 2
    assert WebSettings.from_env(api, {"PORTAL_DOMAINS_WEB_SESSION_KEY": own}).session_key == (
        own.encode()
    )
