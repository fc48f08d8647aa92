"""api.settings.ApiSettings.from_env: defaults, keys and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.settings import ApiSettings, Edition, RoleNames
from core.settings import SettingsError

# Random-looking: a repeated character is refused as too predictable.
SECRET = "3f9c1b7e5a2d4f608e1c3b5a7d9f2e4c"


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_defaults_need_only_a_secret() -> None:
    api = ApiSettings.from_env({"PORTAL_DOMAINS_JWT_KEY": SECRET})
    assert api.jwt_algorithm == "HS256"
    assert api.jwt_audience == "portal-domains"
    assert api.jwt_issuer == "portal-domains"
    assert api.jwt_leeway_seconds == 30
    assert api.edition is Edition.COMMUNITY
    assert api.custom_domains is False
    assert api.mutations_per_minute == 10
    assert api.roles == RoleNames()
    assert api.roles.admin == "tenant_admin"
    assert api.roles.readers == frozenset({"tenant_member"})
    assert api.roles.operator == "platform_operator"


def test_every_variable_is_read() -> None:
    api = ApiSettings.from_env(
        {
            "PORTAL_DOMAINS_JWT_KEY": SECRET,
            "PORTAL_DOMAINS_JWT_AUDIENCE": "aud-1",
            "PORTAL_DOMAINS_JWT_ISSUER": "https://idp.example.com/",
            "PORTAL_DOMAINS_JWT_LEEWAY_SECONDS": "5",
            "PORTAL_DOMAINS_EDITION": "enterprise",
            "PORTAL_DOMAINS_API_RATE_LIMIT": "3",
            "PORTAL_DOMAINS_ADMIN_ROLE": "admin",
            "PORTAL_DOMAINS_READER_ROLES": "viewer, member",
            "PORTAL_DOMAINS_OPERATOR_ROLE": "ops",
        }
    )
    assert (api.jwt_audience, api.jwt_issuer, api.jwt_leeway_seconds) == (
        "aud-1",
        "https://idp.example.com/",
        5,
    )
    assert api.edition is Edition.ENTERPRISE
    assert api.custom_domains
    assert api.mutations_per_minute == 3
    assert api.roles == RoleNames(
        admin="admin", readers=frozenset({"viewer", "member"}), operator="ops"
    )


def test_the_secret_never_appears_in_repr() -> None:
    api = ApiSettings.from_env({"PORTAL_DOMAINS_JWT_KEY": SECRET})
    assert SECRET not in repr(api)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no token verification key"),
        ({"PORTAL_DOMAINS_JWT_KEY": "short"}, "at least 32 bytes"),
        (
            {"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_JWT_ALGORITHM": "none"},
            "HS256, RS256",
        ),
        (
            {"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_JWT_ALGORITHM": "HS512"},
            "HS256, RS256",
        ),
        (
            {"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_EDITION": "ee"},
            "community or enterprise",
        ),
        ({"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_API_RATE_LIMIT": "0"}, "out of range"),
        (
            {"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_API_RATE_LIMIT": "ten"},
            "not an integer",
        ),
        ({"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_JWT_LEEWAY_SECONDS": "301"}, "0-300"),
        ({"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_JWT_AUDIENCE": " aud"}, "whitespace"),
        (
            {"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_READER_ROLES": "tenant_admin"},
            "must all differ",
        ),
        (
            {"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_OPERATOR_ROLE": "tenant_admin"},
            "must all differ",
        ),
        (
            {"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_JWT_KEY_FILE": "/nonexistent"},
            "not both",
        ),
        ({"PORTAL_DOMAINS_JWT_KEY_FILE": "/nonexistent/key"}, "cannot read it"),
        (
            {"PORTAL_DOMAINS_JWT_KEY": SECRET, "PORTAL_DOMAINS_JWT_ALGORITHM": "RS256"},
            "not a PEM public key",
        ),
    ],
)
def test_unusable_values_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ApiSettings.from_env(env)


def test_a_pem_key_is_refused_as_an_hs256_secret(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SettingsError, match="HS256 needs a shared secret"):
        ApiSettings.from_env({"PORTAL_DOMAINS_JWT_KEY": _pem_public(rsa_key)})


def test_rs256_takes_an_rsa_public_key_from_a_file(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "public.pem"
    path.write_text(_pem_public(rsa_key))
    api = ApiSettings.from_env(
        {"PORTAL_DOMAINS_JWT_ALGORITHM": "RS256", "PORTAL_DOMAINS_JWT_KEY_FILE": str(path)}
    )
    assert api.jwt_algorithm == "RS256"
    assert api.jwt_key.startswith("-----BEGIN PUBLIC KEY-----")


def test_es256_takes_a_p256_public_key(ec_key: ec.EllipticCurvePrivateKey) -> None:
    api = ApiSettings.from_env(
        {"PORTAL_DOMAINS_JWT_ALGORITHM": "ES256", "PORTAL_DOMAINS_JWT_KEY": _pem_public(ec_key)}
    )
    assert api.jwt_algorithm == "ES256"


def test_a_private_key_is_refused_with_the_command_that_extracts_the_public_one(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    with pytest.raises(SettingsError, match="-pubout"):
        ApiSettings.from_env(
            {
                "PORTAL_DOMAINS_JWT_ALGORITHM": "RS256",
                "PORTAL_DOMAINS_JWT_KEY": _pem_private(rsa_key),
            }
        )


def test_a_key_of_the_wrong_type_is_refused(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(SettingsError, match="RS256 needs an RSA public key"):
        ApiSettings.from_env(
            {"PORTAL_DOMAINS_JWT_ALGORITHM": "RS256", "PORTAL_DOMAINS_JWT_KEY": _pem_public(ec_key)}
        )
    with pytest.raises(SettingsError, match="P-256"):
        ApiSettings.from_env(
            {
                "PORTAL_DOMAINS_JWT_ALGORITHM": "ES256",
                "PORTAL_DOMAINS_JWT_KEY": _pem_public(rsa_key),
            }
        )


def test_a_short_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(SettingsError, match="at least 2048 bits"):
        ApiSettings.from_env(
            {"PORTAL_DOMAINS_JWT_ALGORITHM": "RS256", "PORTAL_DOMAINS_JWT_KEY": _pem_public(small)}
        )


def test_a_secret_file_loses_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    api = ApiSettings.from_env({"PORTAL_DOMAINS_JWT_KEY_FILE": str(path)})
    assert api.jwt_key == SECRET
