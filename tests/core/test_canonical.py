"""core.canonical: collision-safe prefixes, canonical hosts, secret names, tenant ids."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.canonical import (
    PrefixExhausted,
    TenantIdError,
    canonical_host,
    certificate_secret_name,
    choose_prefix,
    parse_tenant_id,
    prefix_candidates,
)

TENANT = UUID("3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f")


def test_prefix_is_the_first_seven_hex_digits_when_free() -> None:
    assert choose_prefix(TENANT, set()) == "3f2b6c1"


def test_a_taken_prefix_is_lengthened_one_digit_at_a_time() -> None:
    assert choose_prefix(TENANT, {"3f2b6c1"}) == "3f2b6c1e"
    assert choose_prefix(TENANT, {"3f2b6c1", "3f2b6c1e"}) == "3f2b6c1e8"
    assert choose_prefix(TENANT, ["3f2b6c1", "3f2b6c1e", "3f2b6c1e8"]) == "3f2b6c1e8d"


def test_unrelated_taken_prefixes_do_not_lengthen() -> None:
    assert choose_prefix(TENANT, {"3f2b6c2", "3f2b6c1f", "abcdef0"}) == "3f2b6c1"


def test_two_tenants_sharing_seven_digits_get_different_canonical_hosts() -> None:
    first = UUID("abcdef12-0000-4000-8000-000000000001")
    second = UUID("abcdef13-0000-4000-8000-000000000002")
    a = choose_prefix(first, set())
    b = choose_prefix(second, {a})
    assert (a, b) == ("abcdef1", "abcdef13")
    assert canonical_host(a, "portal.algapsa.com") != canonical_host(b, "portal.algapsa.com")
    assert certificate_secret_name(a) != certificate_secret_name(b)


def test_the_full_id_is_the_last_candidate_and_then_choice_fails() -> None:
    candidates = prefix_candidates(TENANT)
    assert candidates[-1] == TENANT.hex
    assert [len(c) for c in candidates] == list(range(7, 33))
    with pytest.raises(PrefixExhausted):
        choose_prefix(TENANT, set(candidates))


@given(st.uuids(), st.sets(st.text(alphabet="0123456789abcdef", min_size=7, max_size=9)))
def test_chosen_prefix_is_never_taken_and_is_a_prefix_of_the_id(
    tenant: UUID, taken: set[str]
) -> None:
    prefix = choose_prefix(tenant, taken)
    assert prefix not in taken
    assert tenant.hex.startswith(prefix)


def test_canonical_host_and_secret_name_follow_the_naming_scheme() -> None:
    assert canonical_host("3f2b6c1", "portal.algapsa.com") == "3f2b6c1.portal.algapsa.com"
    assert canonical_host("3f2b6c1", "Portal.AlgaPSA.com.") == "3f2b6c1.portal.algapsa.com"
    assert certificate_secret_name("3f2b6c1e") == "portal-domain-3f2b6c1e-tls"


@pytest.mark.parametrize("prefix", ["", "3f2b6c", "3F2B6C1", "3f2b6c1-", "g" * 7, "a" * 33])
def test_malformed_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="canonical prefix"):
        certificate_secret_name(prefix)
    with pytest.raises(ValueError, match="canonical prefix"):
        canonical_host(prefix, "portal.algapsa.com")


@pytest.mark.parametrize(
    "raw",
    [
        "3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f",
        "3F2B6C1E-8D4A-4E2F-9B7C-1A2B3C4D5E6F",
        " 3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f\n",
        "3f2b6c1e8d4a4e2f9b7c1a2b3c4d5e6f",
    ],
)
def test_tenant_ids_parse_from_the_usual_spellings(raw: str) -> None:
    assert parse_tenant_id(raw) == TENANT


def test_a_uuid_value_passes_through() -> None:
    assert parse_tenant_id(TENANT) is TENANT


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "acme",
        "3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6",
        "3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6fa",
        "{3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f}",
        "urn:uuid:3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6f",
        "3f2b6c1e-8d4a-4e2f-9b7c-1a2b3c4d5e6g",
        "00000000-0000-0000-0000-000000000000",
    ],
)
def test_anything_else_is_a_tenant_id_error_with_a_clear_message(raw: str) -> None:
    with pytest.raises(TenantIdError, match="UUID") as caught:
        parse_tenant_id(raw)
    assert caught.value.code == "invalid_tenant_id"
