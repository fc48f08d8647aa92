"""Certificate checks and HTTPS probes against a real TLS server on loopback."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.tls import ProbeTarget, check_certificate, probe_https
from loopback.tls_ingress import (
    DASHBOARD_PATH,
    DEFAULT_CERTIFICATE_NAME,
    LocalTlsServer,
    TestCertificateAuthority,
)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCertificateAuthority:
    return TestCertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server(ca: TestCertificateAuthority) -> Iterator[LocalTlsServer]:
    with LocalTlsServer(ca, request_timeout_seconds=2.0) as running:
        yield running


def target_for(
    server: LocalTlsServer, host: str, *, trust: Path | None = None, system_trust: bool = False
) -> ProbeTarget:
    return ProbeTarget(
        host=host,
        port=server.port,
        connect_address="127.0.0.1",
        ca_bundle=None if system_trust else str(trust or server.ca.ca_pem_path),
        timeout_seconds=2.0,
    )


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- check_certificate ----------------------------------------------------------


def test_an_issued_certificate_verifies_and_is_described(server: LocalTlsServer) -> None:
    issued = server.issue("portal.acme.com")

    observation = check_certificate(target_for(server, "portal.acme.com"))

    assert observation.ok, observation.message
    assert observation.subject_alt_names == ("portal.acme.com",)
    assert observation.issuer == "CN=portal-domains test CA"
    assert observation.not_after is not None
    assert abs(observation.not_after - issued.not_after) < dt.timedelta(seconds=1)
    assert observation.message.startswith("portal.acme.com serves a valid certificate")


def test_a_host_without_its_certificate_gets_the_default_one_and_says_which_names_it_has(
    server: LocalTlsServer,
) -> None:
    observation = check_certificate(target_for(server, "portal.beta.example"))

    assert not observation.ok
    assert observation.subject_alt_names == (DEFAULT_CERTIFICATE_NAME,)
    assert observation.message.startswith(
        f"wrong certificate: portal.beta.example:{server.port} (connecting to 127.0.0.1) "
        f"serves a certificate for {DEFAULT_CERTIFICATE_NAME}, not portal.beta.example"
    )


def test_issuing_at_runtime_switches_the_host_to_its_own_certificate(
    server: LocalTlsServer,
) -> None:
    target = target_for(server, "portal.gamma.example")
    assert not check_certificate(target).ok

    server.issue("portal.gamma.example")

    assert check_certificate(target).ok


def test_a_wildcard_certificate_covers_one_label(
    server: LocalTlsServer, ca: TestCertificateAuthority
) -> None:
    server.serve("acme.portal.algapsa.com", ca.issue("*.portal.algapsa.com"))

    observation = check_certificate(target_for(server, "acme.portal.algapsa.com"))

    assert observation.ok, observation.message


def test_a_self_signed_certificate_is_reported_as_untrusted(
    server: LocalTlsServer, ca: TestCertificateAuthority
) -> None:
    server.serve("portal.self.example", ca.issue("portal.self.example", self_signed=True))

    observation = check_certificate(target_for(server, "portal.self.example"))

    assert not observation.ok
    assert observation.subject_alt_names == ("portal.self.example",)
    assert observation.message.startswith(
        "untrusted certificate: portal.self.example serves a certificate issued by "
        "CN=portal.self.example that does not chain to a CA in the CA bundle"
    )


def test_the_test_ca_is_not_trusted_by_the_system_trust_store(server: LocalTlsServer) -> None:
    server.issue("portal.system.example")

    observation = check_certificate(target_for(server, "portal.system.example", system_trust=True))

    assert not observation.ok
    assert "does not chain to a CA in the system trust store" in observation.message


def test_an_expired_certificate_is_reported_with_its_end_date(
    server: LocalTlsServer, ca: TestCertificateAuthority
) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = ca.issue(
        "portal.old.example",
        valid_from=now - dt.timedelta(days=100),
        valid_until=now - dt.timedelta(days=10),
    )
    server.serve("portal.old.example", expired)

    observation = check_certificate(target_for(server, "portal.old.example"))

    assert not observation.ok
    assert observation.message.startswith(
        "expired certificate: portal.old.example serves a certificate that expired on "
        f"{expired.not_after:%Y-%m-%d %H:%M} UTC"
    )


def test_a_closed_port_means_nothing_answers(closed_port: int) -> None:
    target = ProbeTarget(host="portal.acme.com", port=closed_port, connect_address="127.0.0.1")

    observation = check_certificate(target)

    assert not observation.ok
    assert observation.message == (
        f"nothing answers on portal.acme.com:{closed_port} (connecting to 127.0.0.1): "
        "connection refused"
    )


def test_a_listener_that_never_speaks_tls_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        target = ProbeTarget(
            host="portal.acme.com",
            port=silent.getsockname()[1],
            connect_address="127.0.0.1",
            timeout_seconds=0.2,
        )

        observation = check_certificate(target)

    assert not observation.ok
    assert "did not finish a TLS handshake within 0.2s" in observation.message


# -- probe_https ----------------------------------------------------------------


def test_the_portal_root_redirects_to_the_dashboard(server: LocalTlsServer) -> None:
    server.issue("portal.delta.example")

    probe = probe_https(target_for(server, "portal.delta.example"))

    assert probe.ok
    assert probe.status == 302
    assert probe.message == (
        f"GET https://portal.delta.example:{server.port}/: 302 Found -> {DASHBOARD_PATH}"
    )
    assert ("portal.delta.example", "/") in server.requests


def test_a_page_under_the_portal_answers_200(server: LocalTlsServer) -> None:
    server.issue("portal.epsilon.example")

    probe = probe_https(target_for(server, "portal.epsilon.example"), path=DASHBOARD_PATH)

    assert probe.ok
    assert probe.status == 200


def test_a_probe_of_a_host_serving_the_wrong_certificate_fails_without_a_status(
    server: LocalTlsServer,
) -> None:
    probe = probe_https(target_for(server, "portal.zeta.example"))

    assert not probe.ok
    assert probe.status is None
    assert "certificate rejected" in probe.message


def test_a_probe_of_a_closed_port_says_nothing_answers(closed_port: int) -> None:
    target = ProbeTarget(host="portal.acme.com", port=closed_port, connect_address="127.0.0.1")

    probe = probe_https(target)

    assert not probe.ok
    assert probe.message == (
        f"GET https://portal.acme.com:{closed_port}/: nothing answers on "
        f"portal.acme.com:{closed_port} (connecting to 127.0.0.1): connection refused"
    )
