"""HTTPS checks of a tenant's vanity hostname once its certificate should be served.

`check_certificate` does the TLS handshake a browser does (SNI, chain against a
trust store, hostname) and, when it fails, looks at the certificate actually
served to say why in words an operator can act on: nothing listening, the
ingress default certificate (wrong name), an untrusted chain, an expired
certificate. `probe_https` then makes one GET, without following redirects.

`ProbeTarget.connect_address` makes both connect to a fixed address instead of
resolving the host (tests, the demo, probing one gateway behind a load
balancer); SNI, the Host header and verification still use the host name.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import socket
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

logger = logging.getLogger(__name__)

_USER_AGENT = "portal-domains-probe/1"
# OpenSSL X509_V_ERR_* codes we tell apart.
_X509_CERT_NOT_YET_VALID = 9
_X509_CERT_HAS_EXPIRED = 10
_X509_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True, kw_only=True)
class ProbeTarget:
    """Where and how to reach a vanity host over HTTPS.

    `ca_bundle` is a PEM file of trusted CAs (None: the system trust store).
    """

    host: str
    port: int = 443
    connect_address: str | None = None
    ca_bundle: str | None = None
    timeout_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class CertificateObservation:
    """The outcome of a verified TLS handshake and what the served certificate says."""

    ok: bool
    message: str
    subject_alt_names: tuple[str, ...]
    not_after: dt.datetime | None
    issuer: str | None


@dataclass(frozen=True, kw_only=True)
class HttpsProbe:
    """One GET: `ok` for a 2xx or 3xx answer."""

    ok: bool
    status: int | None
    message: str


class _Unreachable(Exception):
    """No TCP connection; the message says so for a person."""


def _where(target: ProbeTarget) -> str:
    via = f" (connecting to {target.connect_address})" if target.connect_address else ""
    return f"{target.host}:{target.port}{via}"


def _url(target: ProbeTarget, path: str) -> str:
    port = "" if target.port == 443 else f":{target.port}"
    return f"https://{target.host}{port}{path}"


def _verifying_context(target: ProbeTarget) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=target.ca_bundle)


def _connect(target: ProbeTarget) -> socket.socket:
    address = target.connect_address or target.host
    try:
        return socket.create_connection((address, target.port), timeout=target.timeout_seconds)
    except ConnectionRefusedError as error:
        raise _Unreachable(f"nothing answers on {_where(target)}: connection refused") from error
    except TimeoutError as error:
        raise _Unreachable(
            f"nothing answers on {_where(target)} within {target.timeout_seconds:g}s"
        ) from error
    except socket.gaierror as error:
        raise _Unreachable(f"{address} does not resolve: {error.strerror}") from error
    except OSError as error:
        raise _Unreachable(
            f"cannot connect to {_where(target)}: {error.strerror or error}"
        ) from error


def _names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return tuple(
            str(attribute.value)
            for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        )
    return tuple(extension.value.get_values_for_type(x509.DNSName))


def _name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 matching: exact, or a wildcard standing for the whole left-most label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern.startswith("*."):
        return pattern == host
    first, _, rest = host.partition(".")
    return bool(first) and rest == pattern[2:]


def _observation(
    certificate: x509.Certificate, *, ok: bool, message: str
) -> CertificateObservation:
    return CertificateObservation(
        ok=ok,
        message=message,
        subject_alt_names=_names(certificate),
        not_after=certificate.not_valid_after_utc,
        issuer=certificate.issuer.rfc4514_string(),
    )


def _served_certificate(target: ProbeTarget) -> x509.Certificate | None:
    """The leaf certificate the host serves for its SNI, without verifying anything."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            _connect(target) as raw,
            context.wrap_socket(raw, server_hostname=target.host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (_Unreachable, OSError) as error:
        logger.debug("could not fetch the certificate of %s: %s", _where(target), error)
        return None
    return x509.load_der_x509_certificate(der) if der else None


def check_certificate(target: ProbeTarget) -> CertificateObservation:
    """Handshake with SNI = host, verify chain and name, and describe the certificate."""
    try:
        raw = _connect(target)
    except _Unreachable as failure:
        return CertificateObservation(
            ok=False, message=str(failure), subject_alt_names=(), not_after=None, issuer=None
        )
    context = _verifying_context(target)
    try:
        with raw, context.wrap_socket(raw, server_hostname=target.host) as tls:
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as error:
        return _diagnose(target, error)
    except ssl.SSLError as error:
        message = f"TLS handshake with {_where(target)} failed: {error.reason or error}"
        return CertificateObservation(
            ok=False, message=message, subject_alt_names=(), not_after=None, issuer=None
        )
    except TimeoutError:
        message = (
            f"{_where(target)} accepted the connection but did not finish a TLS handshake "
            f"within {target.timeout_seconds:g}s"
        )
        return CertificateObservation(
            ok=False, message=message, subject_alt_names=(), not_after=None, issuer=None
        )
    except OSError as error:
        message = f"{_where(target)} dropped the connection during the TLS handshake ({error})"
        return CertificateObservation(
            ok=False, message=message, subject_alt_names=(), not_after=None, issuer=None
        )
    if not der:
        return CertificateObservation(
            ok=False,
            message=f"{_where(target)} completed a handshake without a certificate",
            subject_alt_names=(),
            not_after=None,
            issuer=None,
        )
    certificate = x509.load_der_x509_certificate(der)
    not_after = certificate.not_valid_after_utc
    days = (not_after - dt.datetime.now(dt.UTC)).days
    message = (
        f"{target.host} serves a valid certificate for {', '.join(_names(certificate))} "
        f"issued by {certificate.issuer.rfc4514_string()}, valid until "
        f"{not_after:%Y-%m-%d %H:%M} UTC ({days} days left)"
    )
    return _observation(certificate, ok=True, message=message)


def _diagnose(target: ProbeTarget, error: ssl.SSLCertVerificationError) -> CertificateObservation:
    """Turn a verification failure into the reason an operator needs."""
    reason = error.verify_message or str(error)
    certificate = _served_certificate(target)
    if certificate is None:
        return CertificateObservation(
            ok=False,
            message=f"{_where(target)} serves a certificate that fails verification: {reason}",
            subject_alt_names=(),
            not_after=None,
            issuer=None,
        )
    names = _names(certificate)
    issuer = certificate.issuer.rfc4514_string()
    now = dt.datetime.now(dt.UTC)
    not_after = certificate.not_valid_after_utc
    listed = ", ".join(names) or "no names"
    if not any(_name_matches(name, target.host) for name in names):
        message = (
            f"wrong certificate: {_where(target)} serves a certificate for {listed}, "
            f"not {target.host} (the gateway has no certificate for this host yet, or its "
            "Gateway does not reference the host's TLS secret)"
        )
        if error.verify_code != _X509_HOSTNAME_MISMATCH:
            message += f"; it also fails verification: {reason}"
    elif error.verify_code == _X509_CERT_HAS_EXPIRED or not_after < now:
        message = (
            f"expired certificate: {target.host} serves a certificate that expired on "
            f"{not_after:%Y-%m-%d %H:%M} UTC (issued by {issuer}); renewal is failing"
        )
    elif error.verify_code == _X509_CERT_NOT_YET_VALID or certificate.not_valid_before_utc > now:
        message = (
            f"certificate not yet valid: {target.host} serves a certificate valid from "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check the clocks"
        )
    else:
        store = (
            f"the CA bundle {target.ca_bundle}" if target.ca_bundle else "the system trust store"
        )
        message = (
            f"untrusted certificate: {target.host} serves a certificate issued by {issuer} "
            f"that does not chain to a CA in {store} ({reason})"
        )
    return _observation(certificate, ok=False, message=message)


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `connect_address` while SNI, Host and verification use the host name."""

    def __init__(self, target: ProbeTarget, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=target.timeout_seconds, context=context)
        self._target = target
        self._tls_context = context

    def connect(self) -> None:
        raw = _connect(self._target)
        try:
            self.sock = self._tls_context.wrap_socket(raw, server_hostname=self._target.host)
        except BaseException:
            raw.close()
            raise


_STATUS_HINTS = {
    404: "no route for this host: is its VirtualService applied and bound to the gateway?",
    502: "the gateway cannot reach the portal backend",
    503: "the portal backend is unavailable or has no healthy endpoints",
    504: "the portal backend did not answer in time",
}


def probe_https(target: ProbeTarget, *, path: str = "/") -> HttpsProbe:
    """One GET of `path`, not following redirects: 2xx and 3xx are fine."""
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/': {path!r}")
    url = _url(target, path)
    connection = _HTTPSConnection(target, _verifying_context(target))
    try:
        connection.request("GET", path, headers={"User-Agent": _USER_AGENT, "Accept": "*/*"})
        response = connection.getresponse()
        status, reason = response.status, response.reason
        location = response.getheader("Location")
        response.close()
    except _Unreachable as failure:
        return HttpsProbe(ok=False, status=None, message=f"GET {url}: {failure}")
    except ssl.SSLCertVerificationError as error:
        return HttpsProbe(
            ok=False,
            status=None,
            message=f"GET {url}: certificate rejected ({error.verify_message or error})",
        )
    except ssl.SSLError as error:
        return HttpsProbe(
            ok=False, status=None, message=f"GET {url}: TLS failed ({error.reason or error})"
        )
    except TimeoutError:
        return HttpsProbe(
            ok=False,
            status=None,
            message=f"GET {url}: no answer within {target.timeout_seconds:g}s",
        )
    except (OSError, http.client.HTTPException) as error:
        return HttpsProbe(
            ok=False, status=None, message=f"GET {url}: {type(error).__name__}: {error}"
        )
    finally:
        connection.close()
    if 200 <= status < 400:
        redirect = f" -> {location}" if location and 300 <= status < 400 else ""
        return HttpsProbe(ok=True, status=status, message=f"GET {url}: {status} {reason}{redirect}")
    hint = _STATUS_HINTS.get(status)
    suffix = f" ({hint})" if hint else ""
    return HttpsProbe(ok=False, status=status, message=f"GET {url}: {status} {reason}{suffix}")
