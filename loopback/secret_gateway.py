"""A stand-in for the TLS side of Istio's ingress gateway, fed by a real API server.

In the cluster, Istio's ingress gateway is Envoy: istiod hands it, over SDS, the
certificate of the `kubernetes.io/tls` Secret that a Gateway server's
`tls.credentialName` names, and Envoy presents it to clients whose SNI is one of
that server's `hosts`. Envoy and istiod cannot run on this machine, so
`SecretGateway` plays that part on loopback and says so: it is not Istio.

What it reproduces:
- It polls the Gateways of the gateway's own namespace (istio-system by default)
  and, for each HTTPS server with `tls.mode: SIMPLE` and a `credentialName`, reads
  the Secret of that name from the same namespace only, as Istio does: a Secret in
  another namespace is never used.
- For every host of such a server it serves that Secret's `tls.crt` / `tls.key`,
  chosen by SNI (`loopback.tls_ingress.LocalTlsServer`). A host stops being served
  when its Gateway, its Secret, or a matching certificate/key pair goes away; the
  default certificate (valid chain, wrong name) is then presented and a verifying
  client fails, like a gateway with no certificate for the host.
- A renewed Secret (new content) is served from the next poll on. While the API
  server cannot be reached, what was served stays served (`last_error` says why).

What it does not do: routing (VirtualServices; every GET is answered by the
portal stand-in), plain HTTP and the HTTP->HTTPS redirect, the Gateway's
`selector`, MUTUAL / PASSTHROUGH modes, wildcard hosts (SNI is matched exactly),
and Secrets in the generic `cert` / `key` layout. Two Gateways claiming one host:
the oldest Gateway (then the name) wins, so the choice is stable.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from adapters.kube import ISTIO, KubeClient, KubeError
from loopback.pki import write_private
from loopback.tls_ingress import IssuedCertificate, LocalTlsServer, TestCertificateAuthority

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class _Credential:
    """A Secret's certificate (chain) and key, checked to belong together."""

    secret: str
    cert_pem: bytes
    key_pem: bytes
    not_after: dt.datetime


# --------------------------------------------------------------------------- parsing


def _as_map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _age(gateway: Mapping[str, Any]) -> tuple[str, str]:
    meta = _as_map(gateway.get("metadata"))
    # RFC 3339 timestamps in UTC sort as strings.
    return str(meta.get("creationTimestamp", "")), str(meta.get("name", ""))


def _credential_name(server: Mapping[str, Any]) -> str | None:
    """The Secret an HTTPS server terminates TLS with, if it is one this stand-in serves."""
    protocol = str(_as_map(server.get("port")).get("protocol", "")).upper()
    tls = _as_map(server.get("tls"))
    name = tls.get("credentialName")
    if protocol != "HTTPS" or tls.get("mode") != "SIMPLE" or not isinstance(name, str):
        return None
    return name or None


def _tls_hosts(gateway: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(host, credentialName) for each host of each TLS-terminating server of a Gateway."""
    for server in _as_list(_as_map(gateway.get("spec")).get("servers")):
        secret = _credential_name(_as_map(server))
        if secret is None:
            continue
        for host in _as_list(_as_map(server).get("hosts")):
            if isinstance(host, str):
                # Gateway hosts may be written `<namespace>/<dnsName>`.
                yield host.rpartition("/")[2].lower(), secret


def _same_public_key(certificate: x509.Certificate, key_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem, password=None)
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return certificate.public_key().public_bytes(der, spki) == key.public_key().public_bytes(
        der, spki
    )


def _credential(name: str, secret: Mapping[str, Any]) -> _Credential | None:
    """The Secret's `tls.crt` / `tls.key`, or None when absent, unreadable or not a pair."""
    data = _as_map(secret.get("data"))
    try:
        cert_pem = base64.b64decode(data["tls.crt"], validate=True)
        key_pem = base64.b64decode(data["tls.key"], validate=True)
        # The leaf comes first in tls.crt; intermediates may follow it.
        certificate = x509.load_pem_x509_certificate(cert_pem)
        if not _same_public_key(certificate, key_pem):
            return None
    except (KeyError, TypeError, ValueError, binascii.Error, UnsupportedAlgorithm):
        return None
    return _Credential(
        secret=name,
        cert_pem=cert_pem,
        key_pem=key_pem,
        not_after=certificate.not_valid_after_utc,
    )


# --------------------------------------------------------------------------- gateway


class SecretGateway:
    """HTTPS on 127.0.0.1:<free port> serving, per SNI host, its Gateway's credentialName."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str = "istio-system",
        folder: Path,
        ca: TestCertificateAuthority | None = None,
        interval_seconds: float = 0.5,
    ) -> None:
        self.namespace = namespace
        self.interval_seconds = interval_seconds
        self.last_error: str | None = None
        self._kube = kube
        self._folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._server = LocalTlsServer(ca or TestCertificateAuthority(folder / "default-ca"))
        self._served: dict[str, _Credential] = {}
        self._sync_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading the cluster -------------------------------------------------------

    def _path(self, collection: str, name: str = "") -> str:
        namespace = urllib.parse.quote(self.namespace, safe="")
        suffix = f"/{urllib.parse.quote(name, safe='')}" if name else ""
        return f"/namespaces/{namespace}/{collection}{suffix}"

    def _claims(self) -> dict[str, str]:
        """host -> credentialName, over the Gateways of the namespace, oldest first."""
        listing = _as_map(self._kube.get(ISTIO + self._path("gateways")))
        gateways = sorted((_as_map(item) for item in _as_list(listing.get("items"))), key=_age)
        claims: dict[str, str] = {}
        for gateway in gateways:
            for host, secret in _tls_hosts(gateway):
                claims.setdefault(host, secret)
        return claims

    def _read_secret(self, name: str) -> _Credential | None:
        secret = self._kube.get("/api/v1" + self._path("secrets", name))
        credential = _credential(name, _as_map(secret)) if secret is not None else None
        if credential is None:
            logger.debug("Secret %s/%s has no usable tls.crt/tls.key", self.namespace, name)
        return credential

    def _wanted(self) -> dict[str, _Credential]:
        """What each host should be served, according to the API server now."""
        claims = self._claims()
        credentials = {name: self._read_secret(name) for name in set(claims.values())}
        return {
            host: credential
            for host, name in claims.items()
            if (credential := credentials[name]) is not None
        }

    # -- serving -------------------------------------------------------------------

    def _write(self, host: str, credential: _Credential) -> IssuedCertificate:
        cert_path = self._folder / f"{credential.secret}.crt"
        key_path = self._folder / f"{credential.secret}.key"
        cert_path.write_bytes(credential.cert_pem)
        write_private(key_path, credential.key_pem)
        return IssuedCertificate(
            host=host, cert_path=cert_path, key_path=key_path, not_after=credential.not_after
        )

    def _forget(self, host: str) -> None:
        self._server.forget(host)
        self._served.pop(host, None)

    def _serve(self, host: str, credential: _Credential) -> None:
        try:
            self._server.serve(host, self._write(host, credential))
        except ssl.SSLError as error:  # e.g. a key type OpenSSL will not serve
            logger.debug("cannot serve Secret %s for %s: %s", credential.secret, host, error)
            self._forget(host)
            return
        self._served[host] = credential
        logger.info("serving Secret %s/%s for %s", self.namespace, credential.secret, host)

    def _apply(self, wanted: Mapping[str, _Credential]) -> None:
        for host in self._served.keys() - wanted.keys():
            self._forget(host)
            logger.info("%s has no Gateway and Secret any more: default certificate", host)
        for host, credential in wanted.items():
            if self._served.get(host) != credential:
                self._serve(host, credential)

    def sync_once(self) -> None:
        """Read the Gateways and Secrets once and serve what they say.

        When the API server cannot be asked, the error is kept in `last_error` and
        what is served stays as it was.
        """
        with self._sync_lock:
            try:
                wanted = self._wanted()
            except KubeError as error:
                self.last_error = str(error)
                logger.warning("secret gateway: %s", error)
                return
            self.last_error = None
            self._apply(wanted)

    def served_hosts(self) -> set[str]:
        """The hosts answered with a certificate from a Secret (others get the default)."""
        with self._sync_lock:
            return set(self._served)

    # -- lifecycle -----------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stopping.wait(self.interval_seconds):
            try:
                self.sync_once()
            except Exception as error:  # a bug must not end the polling silently
                self.last_error = f"{type(error).__name__}: {error}"
                logger.exception("secret gateway poll failed")

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> SecretGateway:
        """Listen, sync once, then keep polling every `interval_seconds` in a thread."""
        if self._thread is not None:
            return self
        self._server.start()
        self.sync_once()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._poll, name="secret-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._server.stop()

    def __enter__(self) -> SecretGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
