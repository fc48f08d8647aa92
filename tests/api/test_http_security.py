"""HTTP hardening (issue 14 item 10): security headers, docs behind configuration and
without third-party assets, forwarded headers trusted only from configured proxies,
no redirect built from the Host header."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.middleware import relative_location, secure_headers
from db import migrate
from loopback.temporal import free_port, wait_for_port
from tests.api.conftest import MakeApi
from tests.support.api import ADMIN

DOMAIN = "/api/settings/client-portal/domain"
CLI = str(Path(sys.executable).with_name("portal-domains"))


# ---------------------------------------------------------------- headers


def test_every_answer_carries_nosniff_a_csp_and_no_framing(make_api: MakeApi) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    with local.client() as client:
        answers = [
            client.get(DOMAIN, headers=local.headers(role=ADMIN, tenant=tenant)),
            client.get(DOMAIN),  # 401
            client.get("/nowhere"),  # 404
            client.get("/openapi.json"),
        ]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.url
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"


def test_hsts_is_sent_over_tls_only(make_api: MakeApi) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    headers = local.headers(role=ADMIN, tenant=tenant)
    with local.client("https://testserver") as tls, local.client("http://testserver") as plain:
        assert tls.get(DOMAIN, headers=headers).headers["strict-transport-security"] == (
            "max-age=31536000"
        )
        assert "strict-transport-security" not in plain.get(DOMAIN, headers=headers).headers


# ------------------------------------------------------------------- docs


def test_docs_are_served_by_this_server_without_scripts_or_third_party_assets(
    make_api: MakeApi,
) -> None:
    local = make_api()
    with local.client() as client:
        page = client.get("/docs")
        assert client.get("/redoc").status_code == 404
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert DOMAIN in page.text
    assert "<script" not in page.text.lower()
    # Every URL the page names is this server's own.
    assert re.findall(r"""(?:src|href)=["']?([^"' >]+)""", page.text) == ["/openapi.json"]
    assert "cdn" not in page.text.lower()
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/=]+'", csp)


def test_docs_and_the_openapi_document_are_off_in_prod_unless_configured(
    make_api: MakeApi,
) -> None:
    prod = make_api(env={"PORTAL_DOMAINS_ENVIRONMENT": "prod"})
    with prod.client() as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 404
    opened = make_api(
        env={"PORTAL_DOMAINS_ENVIRONMENT": "prod"}, api_env={"PORTAL_DOMAINS_API_DOCS": "on"}
    )
    with opened.client() as client:
        assert client.get("/docs").status_code == 200
        assert client.get("/openapi.json").status_code == 200
    closed = make_api(api_env={"PORTAL_DOMAINS_API_DOCS": "off"})
    with closed.client() as client:
        assert client.get("/openapi.json").status_code == 404


# -------------------------------------------------------------- redirects


def test_no_redirect_is_built_from_the_host_header(make_api: MakeApi) -> None:
    local = make_api()
    tenant = uuid.uuid4()
    headers = {**local.headers(role=ADMIN, tenant=tenant), "Host": "evil.example"}
    with local.client() as client:
        for path in (DOMAIN + "/", "/docs/", DOMAIN + "/audit/"):
            answer = client.get(path, headers=headers, follow_redirects=False)
            assert "evil.example" not in answer.headers.get("location", ""), path
            assert answer.status_code == 404, path


@pytest.mark.parametrize(
    ("location", "relative"),
    [
        (b"http://evil.example/api/x?a=1", b"/api/x?a=1"),
        (b"//evil.example/api/x", b"/api/x"),
        (b"https://evil.example//other.example/x", b"/other.example/x"),
        (b"/api/settings/client-portal/domain", b"/api/settings/client-portal/domain"),
    ],
)
def test_a_location_is_made_relative(location: bytes, relative: bytes) -> None:
    assert relative_location(location) == relative
    headers = secure_headers([(b"location", location)], tls=False)
    assert (b"location", relative) in headers


# ------------------------------------------------- forwarded headers (serve)


@contextmanager
def _serve(tmp_path: Path, extra: dict[str, str]) -> Iterator[str]:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_DOMAINS_")}
    env.pop("FORWARDED_ALLOW_IPS", None)
    env.update(
        {
            "PORTAL_DOMAINS_HOME": str(tmp_path),
            "PORTAL_DOMAINS_DATABASE_URL": database_url,
            "PORTAL_DOMAINS_START_WORKFLOWS": "off",
            "PORTAL_DOMAINS_JWT_KEY": secrets.token_hex(32),
            **extra,
        }
    )
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, 60, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()


@pytest.mark.parametrize(
    ("extra", "trusted"),
    [
        ({}, False),
        ({"PORTAL_DOMAINS_API_FORWARDED_ALLOW_IPS": "10.1.2.3"}, False),
        ({"PORTAL_DOMAINS_API_FORWARDED_ALLOW_IPS": "127.0.0.0/8"}, True),
    ],
)
def test_forwarded_headers_count_only_from_a_configured_proxy(
    tmp_path: Path, extra: dict[str, str], trusted: bool
) -> None:
    # The test client connects from 127.0.0.1, which uvicorn trusts by default: a
    # client claiming TLS with X-Forwarded-Proto must not be believed unless configured.
    with _serve(tmp_path, extra) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            answer = client.get(
                "/openapi.json",
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
            )
        assert answer.status_code == 200
        assert ("strict-transport-security" in answer.headers) is trusted
