"""A stand-in for the ingress gateway on loopback: HTTPS with per-host certificates.

`TestCertificateAuthority` makes a private CA (its `ca.pem` is what a probe
trusts) and issues leaf certificates. `LocalTlsServer` listens on
127.0.0.1:<free port> and picks the certificate by SNI, like Istio's gateway
picks a `credentialName`: a host starts out with the default certificate (valid
chain, wrong name, like an ingress default certificate) until `issue(host)`
simulates cert-manager delivering its certificate. Its HTTP side answers like
the client portal: `/` redirects to `/client-portal/dashboard`, every other path
is 200. Used by the tests and by `portal-domains demo`.
"""

from __future__ import annotations

import datetime as dt
import http.server
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from loopback.pki import self_signed_ca

logger = logging.getLogger(__name__)

DEFAULT_CERTIFICATE_NAME = "ingress-default.invalid"
DASHBOARD_PATH = "/client-portal/dashboard"


@dataclass(frozen=True, kw_only=True)
class IssuedCertificate:
    """PEM files of one leaf certificate and its key."""

    host: str
    cert_path: Path
    key_path: Path
    not_after: dt.datetime


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are generated in microseconds, RSA ones in tens of milliseconds.
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _file_stem(host: str) -> str:
    return host.replace("*", "_wildcard").replace("/", "_")


class TestCertificateAuthority:
    """A throwaway CA whose certificate is written to `<directory>/ca.pem`."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Path, *, common_name: str = "portal-domains test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = _key()
        self.certificate = self_signed_ca(self._key, common_name, days=30)
        self._name = self.certificate.subject
        self._ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        self.ca_pem_path = directory / "ca.pem"
        self.ca_pem_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        *names: str,
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
        self_signed: bool = False,
    ) -> IssuedCertificate:
        """A leaf certificate for `names` (the first is the subject), signed by this CA.

        `valid_from` / `valid_until` default to a window around now; put both in the
        past for an expired certificate. `self_signed` signs it with its own key, so
        no trust store accepts it.
        """
        if not names:
            raise ValueError("a certificate needs at least one name")
        now = dt.datetime.now(dt.UTC)
        not_before = valid_from or now - dt.timedelta(minutes=5)
        not_after = valid_until or now + dt.timedelta(days=90)
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        issuer = subject if self_signed else self._name
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
        certificate = builder.sign(key if self_signed else self._key, hashes.SHA256())
        stem = _file_stem(names[0]) + ("-self-signed" if self_signed else "")
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return IssuedCertificate(
            host=names[0], cert_path=cert_path, key_path=key_path, not_after=not_after
        )


class _PortalHandler(http.server.BaseHTTPRequestHandler):
    server: _HttpsServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)

    def do_GET(self) -> None:  # http.server dispatches on this name
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        with self.server.lock:
            self.server.requests.append((host, self.path))
        if self.path == "/":
            body = b""
            self.send_response(302)
            self.send_header("Location", DASHBOARD_PATH)
        else:
            body = f"client portal for {host}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class _HttpsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], context: ssl.SSLContext, request_timeout: float
    ) -> None:
        self.context = context
        self.request_timeout = request_timeout
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        super().__init__(address, _PortalHandler)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, address = self.socket.accept()
        # The handshake happens in the handler's thread (first read), so a slow
        # or failing client never blocks the accept loop.
        wrapped = self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that reject our certificate abort the handshake: expected here.
        logger.debug("HTTPS connection from %s ended with an error", client_address, exc_info=True)


class LocalTlsServer:
    """HTTPS on 127.0.0.1:<free port> choosing its certificate by SNI."""

    def __init__(
        self,
        ca: TestCertificateAuthority,
        *,
        host: str = "127.0.0.1",
        request_timeout_seconds: float = 5.0,
        poll_interval_seconds: float = 0.02,
    ) -> None:
        self.ca = ca
        self._host = host
        self._timeout = request_timeout_seconds
        self._poll_interval = poll_interval_seconds
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._default = self._context(ca.issue(DEFAULT_CERTIFICATE_NAME))
        self._default.sni_callback = self._select
        self._server: _HttpsServer | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _context(certificate: IssuedCertificate) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
        return context

    def _select(
        self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        if server_name is not None:
            with self._lock:
                context = self._contexts.get(server_name.lower())
            if context is not None:
                sock.context = context
        return None

    # -- certificates ------------------------------------------------------------

    def serve(self, host: str, certificate: IssuedCertificate) -> None:
        """Answer SNI `host` with `certificate` from now on."""
        context = self._context(certificate)
        with self._lock:
            self._contexts[host.lower()] = context

    def issue(self, host: str) -> IssuedCertificate:
        """Start serving a valid certificate for `host` (what cert-manager would deliver)."""
        certificate = self.ca.issue(host)
        self.serve(host, certificate)
        return certificate

    def forget(self, host: str) -> None:
        """Serve the default certificate to `host` again."""
        with self._lock:
            self._contexts.pop(host.lower(), None)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the HTTPS server is not running")
        port: int = self._server.server_address[1]
        return port

    @property
    def address(self) -> str:
        return self._host

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(Host header without port, path) of every request answered so far."""
        if self._server is None:
            return []
        with self._server.lock:
            return list(self._server.requests)

    def start(self) -> LocalTlsServer:
        if self._server is not None:
            return self
        self._server = _HttpsServer((self._host, 0), self._default, self._timeout)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self._poll_interval},
            name="https-responder",
            daemon=True,
        )
        self._thread.start()
        logger.info("local HTTPS server listening on %s:%d", self._host, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalTlsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
