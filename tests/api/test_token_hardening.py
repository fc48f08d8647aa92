"""Tokens and secrets (issue 14 item 9): lifetime cap, weak HS secrets, a public key as secret."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.auth import mint_dev_token, verify_token
from api.settings import ApiSettings, check_key
from core.settings import SettingsError
from tests.api.conftest import MakeApi
from tests.support.api import ADMIN, api_settings

DOMAIN = "/api/settings/client-portal/domain"


def test_a_token_valid_for_longer_than_the_maximum_lifetime_is_refused(make_api: MakeApi) -> None:
    local = make_api(api_env={"PORTAL_DOMAINS_JWT_MAX_LIFETIME_SECONDS": "3600"})
    tenant = uuid.uuid4()
    with local.client() as client:
        ok = client.get(DOMAIN, headers=local.headers(role=ADMIN, tenant=tenant, ttl=3600))
        forever = client.get(
            DOMAIN, headers=local.headers(role=ADMIN, tenant=tenant, ttl=10 * 365 * 86400)
        )
        # Without iat the lifetime left counts.
        no_iat = client.get(
            DOMAIN, headers=local.headers(role=ADMIN, tenant=tenant, ttl=7200, iat=None)
        )
    assert ok.status_code == 200, ok.text
    assert forever.status_code == 401
    assert forever.json()["error"]["code"] == "token_lifetime_too_long"
    assert no_iat.status_code == 401


def test_the_default_maximum_lifetime_is_a_day_and_dev_tokens_respect_it() -> None:
    api = api_settings()
    assert api.jwt_max_lifetime_seconds == 86_400
    with pytest.raises(ValueError, match="ttl"):
        mint_dev_token(api, subject="d", role=ADMIN, tenant_id=None, ttl_seconds=86_401)
    token = mint_dev_token(api, subject="d", role=ADMIN, tenant_id=None, ttl_seconds=86_400)
    assert verify_token(token, api).issuer == api.jwt_issuer


@pytest.mark.parametrize("raw", ["59", "604801", "x"])
def test_the_maximum_lifetime_setting_is_bounded(raw: str) -> None:
    with pytest.raises(SettingsError, match="PORTAL_DOMAINS_JWT_MAX_LIFETIME_SECONDS"):
        api_settings(extra={"PORTAL_DOMAINS_JWT_MAX_LIFETIME_SECONDS": raw})


@pytest.mark.parametrize(
    "secret",
    [
        "a" * 64,  # long enough, one character
        "ab" * 32,
        "password" * 4,  # a word repeated
        "passwordpassword" * 3,
    ],
)
def test_a_predictable_hs256_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="predictable"):
        check_key("HS256", secret, source="PORTAL_DOMAINS_JWT_KEY")
    with pytest.raises(SettingsError, match="predictable"):
        api_settings(extra={"PORTAL_DOMAINS_JWT_KEY": secret})


def test_a_random_hs256_secret_is_accepted() -> None:
    check_key("HS256", "0123456789abcdef" * 2 + "fedcba9876543210", source="k")
    check_key("HS256", "correct horse battery staple 123", source="k")


def _rsa_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize("shape", ["one_line", "pem_lines", "der_base64"])
def test_a_public_key_without_its_pem_header_is_refused_as_an_hs256_secret(shape: str) -> None:
    pem = _rsa_public_pem()
    body_lines = [line for line in pem.splitlines() if not line.startswith("-----")]
    secret = {
        "one_line": "".join(body_lines),
        "pem_lines": "\n".join(body_lines),
        "der_base64": base64.b64encode(base64.b64decode("".join(body_lines))).decode(),
    }[shape]
    # Anyone holding the public key could sign HS256 tokens with it (alg confusion).
    with pytest.raises(ValueError, match="PEM key"):
        check_key("HS256", secret, source="PORTAL_DOMAINS_JWT_KEY")
    with pytest.raises(SettingsError, match="PEM key"):
        ApiSettings.from_env({"PORTAL_DOMAINS_JWT_KEY": secret})
