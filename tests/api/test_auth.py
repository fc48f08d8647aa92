"""Bearer tokens: what the running API refuses with 401, and what verify_token accepts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.auth import AuthError, authenticate, mint_dev_token, verify_token
from api.settings import ApiSettings
from tests.support.api import ADMIN, OPERATOR, RunningApi, error_code, running_api
from tests.support.services import create_database

TENANT = uuid.UUID("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f")
# Random-looking: a repeated character is refused as too predictable (issue 14 item 9).
HS_SECRET = "9d4e1a7c3b8f2e6d0a5c9b1e7f3d2a8c4b6e0f1a"


@pytest.fixture(scope="module")
def api(
    postgres_admin_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    database_url = create_database(postgres_admin_url, f"auth_{uuid.uuid4().hex[:12]}")
    with running_api(
        database_url=database_url,
        temporal_address=temporal_address,
        work_dir=tmp_path_factory.mktemp("auth"),
    ) as running:
        yield running


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _bad_tokens(api: RunningApi) -> list[tuple[str, str, str]]:
    """(name, Authorization header value, expected code)."""
    now = int(time.time())
    good = {
        "sub": "alice",
        "role": ADMIN,
        "tenant_id": str(TENANT),
        "aud": api.api.jwt_audience,
        "iss": api.api.jwt_issuer,
        "exp": now + 300,
    }

    def bearer(token: str) -> str:
        return f"Bearer {token}"

    return [
        ("expired", bearer(api.token(role=ADMIN, tenant=TENANT, ttl=-60)), "token_expired"),
        (
            "wrongly signed",
            bearer(api.token(role=ADMIN, tenant=TENANT, key="another-secret-of-32-bytes-or-more")),
            "invalid_token",
        ),
        (
            "wrong audience",
            bearer(api.token(role=ADMIN, tenant=TENANT, aud="other-api")),
            "invalid_token",
        ),
        (
            "wrong issuer",
            bearer(api.token(role=ADMIN, tenant=TENANT, iss="https://evil")),
            "invalid_token",
        ),
        ("no exp", bearer(api.token(role=ADMIN, tenant=TENANT, exp=None)), "invalid_token"),
        ("no aud", bearer(api.token(role=ADMIN, tenant=TENANT, aud=None)), "invalid_token"),
        ("no iss", bearer(api.token(role=ADMIN, tenant=TENANT, iss=None)), "invalid_token"),
        ("no sub", bearer(api.token(role=ADMIN, tenant=TENANT, sub=None)), "invalid_token"),
        ("no role", bearer(api.token(role=None, tenant=TENANT)), "invalid_token"),
        (
            "not yet valid",
            bearer(api.token(role=ADMIN, tenant=TENANT, nbf=now + 600)),
            "invalid_token",
        ),
        ("tenant not a uuid", bearer(api.token(role=ADMIN, tenant_id="acme")), "invalid_token"),
        ("tenant a number", bearer(api.token(role=ADMIN, tenant_id=42)), "invalid_token"),
        (
            "sub too long",
            bearer(api.token(role=ADMIN, tenant=TENANT, sub="x" * 191)),
            "invalid_token",
        ),
        ("sub not a string", bearer(api.token(role=ADMIN, tenant=TENANT, sub=7)), "invalid_token"),
        ("alg none", bearer(_unsigned(good)), "invalid_token"),
        (
            "HS512",
            bearer(jwt.encode(good, api.api.jwt_key, algorithm="HS512")),
            "invalid_token",
        ),
        ("garbage", "Bearer not.a.jwt", "invalid_token"),
        ("basic scheme", "Basic YWxpY2U6c2VjcmV0", "invalid_token"),
        ("empty bearer", "Bearer", "invalid_token"),
        ("huge", "Bearer " + "a" * 9000, "invalid_token"),
    ]


@pytest.mark.postgres
@pytest.mark.temporal
def test_no_token_is_a_401_with_a_bearer_challenge(api: RunningApi) -> None:
    with api.client() as client:
        response = client.get(api.domain_url)
    assert response.status_code == 401
    assert error_code(response) == "missing_token"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.postgres
@pytest.mark.temporal
def test_bad_tokens_are_refused_with_401_on_every_operation(api: RunningApi) -> None:
    operations = [("GET", ""), ("POST", ""), ("POST", "/refresh"), ("DELETE", "")]
    with api.client() as client:
        for name, header, code in _bad_tokens(api):
            for method, path in operations:
                response = client.request(
                    method,
                    api.domain_url + path,
                    headers={"Authorization": header},
                    json={"domain": "portal.acme.com"} if path == "" and method == "POST" else None,
                )
                assert response.status_code == 401, (name, method, path, response.text)
                assert error_code(response) == code, name
                assert 'error="invalid_token"' in response.headers["www-authenticate"]
                token = header.partition(" ")[2]
                assert not token or token not in response.text
    # Nothing reached the service: no row, no audit.
    assert api.audit(TENANT) == []


@pytest.mark.postgres
@pytest.mark.temporal
def test_authentication_comes_before_body_parsing(api: RunningApi) -> None:
    with api.client() as client:
        response = client.post(
            api.domain_url, content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 401
    assert error_code(response) == "missing_token"


@pytest.mark.parametrize(
    ("leeway", "expired_seconds_ago", "accepted"),
    [(30, 10, True), (30, 90, False), (0, 10, False)],
    ids=["inside-the-leeway", "outside-the-leeway", "no-leeway"],
)
def test_an_expired_token_is_accepted_only_within_the_leeway(
    leeway: int, expired_seconds_ago: int, accepted: bool
) -> None:
    secret = HS_SECRET
    api = ApiSettings.from_env(
        {"PORTAL_DOMAINS_JWT_KEY": secret, "PORTAL_DOMAINS_JWT_LEEWAY_SECONDS": str(leeway)}
    )
    assert api.jwt_leeway_seconds == leeway
    token = jwt.encode(
        _claims(exp=int(time.time()) - expired_seconds_ago), secret, algorithm="HS256"
    )
    if accepted:
        assert verify_token(token, api).subject == "op-1"
    else:
        with pytest.raises(AuthError) as refused:
            verify_token(token, api)
        assert refused.value.code == "token_expired"


# ----------------------------------------------------------------- pure checks


def _settings(algorithm: str, key: str) -> ApiSettings:
    return ApiSettings.from_env(
        {"PORTAL_DOMAINS_JWT_ALGORITHM": algorithm, "PORTAL_DOMAINS_JWT_KEY": key}
    )


def _claims(**extra: Any) -> dict[str, Any]:
    return {
        "sub": "op-1",
        "role": OPERATOR,
        "aud": "portal-domains",
        "iss": "portal-domains",
        "exp": int(time.time()) + 60,
        **extra,
    }


def test_rs256_tokens_verify_with_the_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    api = _settings("RS256", public)
    principal = verify_token(jwt.encode(_claims(), private, algorithm="RS256"), api)
    assert (principal.subject, principal.role, principal.tenant_id) == ("op-1", OPERATOR, None)
    assert principal.actor == "user:op-1"

    # Algorithm confusion: an HS256 token "signed" with the public key as secret.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    signature = hmac.new(public.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError) as refused:
        verify_token(f"{header}.{payload}.{_b64(signature)}", api)
    assert refused.value.code == "invalid_token"


def test_es256_tokens_verify_with_the_public_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    api = _settings("ES256", public)
    token = jwt.encode(_claims(tenant_id=str(TENANT), role=ADMIN), private, algorithm="ES256")
    principal = verify_token(token, api)
    assert principal.tenant_id == TENANT
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthError):
        verify_token(jwt.encode(_claims(), other, algorithm="ES256"), api)


def test_authenticate_parses_the_header_case_insensitively() -> None:
    api = _settings("HS256", HS_SECRET)
    token = jwt.encode(_claims(), api.jwt_key, algorithm="HS256")
    assert authenticate(f"bearer {token}", api).subject == "op-1"
    with pytest.raises(AuthError) as missing:
        authenticate(None, api)
    assert missing.value.code == "missing_token"


def test_dev_tokens_are_minted_only_with_an_hs256_secret() -> None:
    api = _settings("HS256", HS_SECRET)
    token = mint_dev_token(api, subject="dev", role=ADMIN, tenant_id=TENANT, ttl_seconds=60)
    principal = verify_token(token, api)
    assert (principal.subject, principal.role, principal.tenant_id) == ("dev", ADMIN, TENANT)
    with pytest.raises(ValueError, match="ttl"):
        mint_dev_token(api, subject="dev", role=ADMIN, tenant_id=TENANT, ttl_seconds=0)
    private = ec.generate_private_key(ec.SECP256R1())
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match="HS256"):
        mint_dev_token(
            _settings("ES256", public), subject="d", role=ADMIN, tenant_id=None, ttl_seconds=60
        )
