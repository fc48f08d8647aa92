"""CNAME and CAA checks against a real DNS server on loopback (loopback.dns_server)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import pytest

from adapters.dns import (
    CnameObservation,
    DnsSettings,
    check_caa,
    cname_matches,
    lookup_cname,
)
from loopback.dns_server import LocalDnsServer

CANONICAL = "acme1234.portal.algapsa.com"


@pytest.fixture
def dns_server() -> Iterator[LocalDnsServer]:
    with LocalDnsServer(timeout_seconds=1.0) as server:
        yield server


@pytest.fixture
def silent_nameserver() -> Iterator[DnsSettings]:
    """A UDP port that receives queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield DnsSettings(
            nameservers=("127.0.0.1",), port=sock.getsockname()[1], timeout_seconds=0.2
        )


# -- CNAME ----------------------------------------------------------------------


def test_cname_target_is_reported_lowercased_without_trailing_dot(
    dns_server: LocalDnsServer,
) -> None:
    dns_server.set_cname("Portal.Acme.com", "ACME1234.portal.algapsa.com.")

    observation = lookup_cname("portal.acme.com.", settings=dns_server.settings)

    assert observation == CnameObservation(
        domain="portal.acme.com", observed=CANONICAL, error=None, ttl=5
    )


def test_the_cname_ttl_is_reported_and_absent_without_a_cname(
    dns_server: LocalDnsServer,
) -> None:
    # The loopback server answers with a TTL of 5 seconds.
    dns_server.set_cname("portal.acme.com", CANONICAL)
    dns_server.set_a("other.acme.com", "192.0.2.10")

    assert lookup_cname("portal.acme.com", settings=dns_server.settings).ttl == 5
    assert lookup_cname("other.acme.com", settings=dns_server.settings).ttl is None


def test_a_name_that_does_not_exist_is_reported_as_nxdomain(dns_server: LocalDnsServer) -> None:
    observation = lookup_cname("portal.nowhere.example", settings=dns_server.settings)

    assert observation.observed is None
    assert observation.error == "the name does not exist (NXDOMAIN)"


def test_an_a_record_where_a_cname_belongs_is_described(dns_server: LocalDnsServer) -> None:
    dns_server.set_a("portal.acme.com", "192.0.2.10")

    observation = lookup_cname("portal.acme.com", settings=dns_server.settings)

    assert observation.observed is None
    assert observation.error == "an A record 192.0.2.10 instead of a CNAME"


def test_a_name_with_no_records_of_its_own_says_it_has_no_cname(
    dns_server: LocalDnsServer,
) -> None:
    dns_server.set_cname("portal.acme.com", CANONICAL)

    observation = lookup_cname("acme.com", settings=dns_server.settings)

    assert observation.observed is None
    assert observation.error is not None
    assert observation.error.startswith("no CNAME record")


def test_a_removed_cname_is_no_longer_observed(dns_server: LocalDnsServer) -> None:
    dns_server.set_cname("portal.acme.com", CANONICAL)
    dns_server.remove("portal.acme.com")

    observation = lookup_cname("portal.acme.com", settings=dns_server.settings)

    assert observation.error == "the name does not exist (NXDOMAIN)"


def test_a_nameserver_that_never_answers_gives_a_timeout_phrase(
    silent_nameserver: DnsSettings,
) -> None:
    observation = lookup_cname("portal.acme.com", settings=silent_nameserver)

    assert observation.observed is None
    assert observation.error == (
        f"no answer from the nameserver 127.0.0.1:{silent_nameserver.port} within 0.2s"
    )


@pytest.mark.parametrize(
    ("observed", "expected", "matches"),
    [
        (CANONICAL, CANONICAL, True),
        (CANONICAL, CANONICAL.upper() + ".", True),
        (CANONICAL, "other.portal.algapsa.com", False),
        (None, CANONICAL, False),
    ],
)
def test_cname_matching_ignores_case_and_trailing_dots(
    observed: str | None, expected: str, matches: bool
) -> None:
    observation = CnameObservation(domain="portal.acme.com", observed=observed, error=None)

    assert cname_matches(observation, expected) is matches


def test_the_responder_also_answers_over_tcp(dns_server: LocalDnsServer) -> None:
    dns_server.set_cname("portal.acme.com", CANONICAL)
    query = dns.message.make_query("portal.acme.com", "CNAME")

    response = dns.query.tcp(query, "127.0.0.1", port=dns_server.port, timeout=1.0)

    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer[0].to_text().endswith(f"CNAME {CANONICAL}.")


# -- CAA ------------------------------------------------------------------------


def test_no_caa_records_anywhere_allow_issuance(dns_server: LocalDnsServer) -> None:
    dns_server.set_cname("portal.acme.com", CANONICAL)
    dns_server.set_a(CANONICAL, "192.0.2.1")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert result.allowed
    assert result.relevant_name is None
    assert result.records == ()


def test_caa_on_a_parent_that_names_another_ca_forbids_issuance_with_a_fix(
    dns_server: LocalDnsServer,
) -> None:
    dns_server.set_a("portal.acme.com", "192.0.2.1")
    dns_server.set_caa("acme.com", 0, "issue", "digicert.com")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert not result.allowed
    assert result.relevant_name == "acme.com"
    assert result.records == ('0 issue "digicert.com"',)
    assert result.message == (
        "portal.acme.com: CAA at acme.com allows only digicert.com; "
        'add `acme.com. CAA 0 issue "letsencrypt.org"`'
    )


def test_caa_naming_lets_encrypt_among_others_allows_issuance(dns_server: LocalDnsServer) -> None:
    dns_server.set_a("portal.acme.com", "192.0.2.1")
    dns_server.set_caa("acme.com", 0, "issue", "digicert.com")
    dns_server.set_caa("acme.com", 0, "issue", "LetsEncrypt.org")
    dns_server.set_caa("acme.com", 0, "iodef", "mailto:security@acme.com")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert result.allowed
    assert result.relevant_name == "acme.com"
    assert len(result.records) == 3


def test_the_closest_caa_set_decides_and_parents_are_not_consulted(
    dns_server: LocalDnsServer,
) -> None:
    dns_server.set_caa("portal.acme.com", 0, "issue", "letsencrypt.org")
    dns_server.set_caa("acme.com", 0, "issue", ";")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert result.allowed
    assert result.relevant_name == "portal.acme.com"


def test_an_empty_issue_value_forbids_every_ca(dns_server: LocalDnsServer) -> None:
    dns_server.set_a("portal.acme.com", "192.0.2.1")
    dns_server.set_caa("acme.com", 0, "issue", ";")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert not result.allowed
    assert 'forbids every CA (issue ";")' in result.message


def test_caa_at_the_cname_target_is_what_the_ca_checks(dns_server: LocalDnsServer) -> None:
    dns_server.set_cname("portal.acme.com", "alias.hosting.example")
    dns_server.set_cname("alias.hosting.example", CANONICAL)
    dns_server.set_caa(CANONICAL, 0, "issue", "pki.goog")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert not result.allowed
    assert result.relevant_name == CANONICAL
    assert f"CAA at {CANONICAL} (the CNAME target of portal.acme.com) allows only pki.goog" in (
        result.message
    )


def test_issuewild_does_not_restrict_a_plain_hostname(dns_server: LocalDnsServer) -> None:
    dns_server.set_a("portal.acme.com", "192.0.2.1")
    dns_server.set_caa("acme.com", 0, "issuewild", ";")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert result.allowed
    assert "does not restrict" in result.message


def test_lets_encrypt_limited_to_dns_01_does_not_authorise_http_01(
    dns_server: LocalDnsServer,
) -> None:
    dns_server.set_a("portal.acme.com", "192.0.2.1")
    dns_server.set_caa("acme.com", 0, "issue", "letsencrypt.org; validationmethods=dns-01")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert not result.allowed
    assert "validationmethods=dns-01" in result.message
    assert 'issue "letsencrypt.org; validationmethods=http-01"' in result.message


def test_an_unknown_critical_property_forbids_issuance(dns_server: LocalDnsServer) -> None:
    dns_server.set_a("portal.acme.com", "192.0.2.1")
    dns_server.set_caa("acme.com", 128, "tbs", "unknown")
    dns_server.set_caa("acme.com", 0, "issue", "letsencrypt.org")

    result = check_caa("portal.acme.com", settings=dns_server.settings)

    assert not result.allowed
    assert "critical property" in result.message


def test_a_caa_lookup_that_times_out_is_reported_as_a_failed_lookup(
    silent_nameserver: DnsSettings,
) -> None:
    result = check_caa("portal.acme.com", settings=silent_nameserver)

    assert not result.allowed
    assert result.lookup_failed
    assert "could not read CAA records" in result.message
