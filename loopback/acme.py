"""Real certificate issuance on loopback: a DNS server, an ACME server and cert-manager.

Three real programs, each started by a context manager and always stopped afterwards:

- `running_dns_server`: BIND 9's `named` serving the tenants' zones and our ACME
  delegation zone. Only a TSIG key we hand to cert-manager may update the delegation
  zone (RFC 2136); the tenant zones accept updates signed with a separate "tenant"
  key, which stands for the tenant editing their own DNS in tests.
- `running_pebble`: Pebble, Let's Encrypt's ACME test server, validating DNS-01
  against that server, on HTTPS with a certificate from a throwaway CA of ours.
  Callers trust that CA (the ClusterIssuer's `caBundle`), never skip verification.
- `running_cert_manager`: cert-manager's own ACME controllers
  (scripts/toolchain/cert-manager/main.go) against a loopback cluster
  (loopback/cluster.py). No kubelet runs there, so only DNS-01 can work. After its
  DNS-01 self-check passes, cert-manager sleeps a fixed 60 s before asking the CA to
  validate (pkg/issuer/acme/dns/dns.go): an issuance takes a little over a minute,
  here as in production.

scripts/setup-certificates.sh builds the controller and Pebble into a cache folder
keyed by CERT_MANAGER_VERSION and PEBBLE_VERSION (scripts/toolchain/versions.env) and
installs `named` from the Debian package bind9. Everything a server writes (config,
zone files, keys, logs) stays in the state folder the caller passes, for inspection
after a failure.

Linux only, like loopback/cluster.py.
"""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress
import json
import logging
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.dns import DnsSettings
from adapters.kube import object_path
from core.certificates import condition
from loopback.cluster import ClusterInfo, api_request
from loopback.pki import self_signed_ca, write_private
from stack.toolchain import VERSIONS_FILE, cache_root, read_pins

log = logging.getLogger(__name__)

SETUP_HINT = "run scripts/setup-certificates.sh"

DEFAULT_ACME_ZONE = "acme-challenges.portal-domains.test"
CLUSTER_RESOURCE_NAMESPACE = "cert-manager"
TSIG_SECRET_NAME = "acme-dns-tsig"
TSIG_SECRET_KEY = "tsig-secret"
# The same algorithm under its BIND/dnspython name and its cert-manager name.
TSIG_ALGORITHM = "hmac-sha256"
CERT_MANAGER_TSIG_ALGORITHM = "HMACSHA256"
# Short TTLs: a record changed by a test must be what the next query sees.
ZONE_TTL = 1
_LOOPBACK = "127.0.0.1"
_BIND_ATTEMPTS = 3


class AcmeError(RuntimeError):
    """A part of the loopback certificate pipeline could not be started or used."""


# --------------------------------------------------------------------------- locating


@dataclass(frozen=True, kw_only=True)
class CertificateVersions:
    cert_manager: str
    pebble: str

    @property
    def binaries_key(self) -> str:
        return f"cert-manager-{self.cert_manager}_pebble-{self.pebble}"


@dataclass(frozen=True, kw_only=True)
class AcmeBinaries:
    controller: Path
    pebble: Path
    named: Path


def read_versions(path: Path = VERSIONS_FILE) -> CertificateVersions:
    values = read_pins(path)
    try:
        return CertificateVersions(
            cert_manager=values["CERT_MANAGER_VERSION"], pebble=values["PEBBLE_VERSION"]
        )
    except KeyError as missing:
        raise AcmeError(f"{path} lacks {missing.args[0]}") from None


def locate(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """One program: cert-manager-controller or pebble from the cached build (else PATH),
    named from PATH."""
    env = os.environ if environ is None else environ
    versions = read_versions()
    bin_dir = cache_root(env) / "toolchain" / versions.binaries_key / "bin"
    if name != "named" and os.access(bin_dir / name, os.X_OK):
        return (bin_dir / name).resolve()
    # named is installed to /usr/sbin, which a non-root PATH often lacks.
    search = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    on_path = shutil.which(name, path=search)
    if on_path is None:
        where = "on PATH" if name == "named" else f"in {bin_dir} nor on PATH"
        raise AcmeError(
            f"{name} not found {where}: {SETUP_HINT} (builds cert-manager "
            f"v{versions.cert_manager} and Pebble v{versions.pebble}, installs bind9)"
        )
    return Path(on_path).resolve()


def locate_binaries(environ: Mapping[str, str] | None = None) -> AcmeBinaries:
    return AcmeBinaries(
        controller=locate("cert-manager-controller", environ),
        pebble=locate("pebble", environ),
        named=locate("named", environ),
    )


# --------------------------------------------------------------------------- processes


@dataclass
class _Child:
    """A server process this module started; `stop` ends and reaps it."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.proc.pid)
            self.proc.kill()
            self.proc.wait(timeout=5)


def _launch(
    name: str, argv: Sequence[str], state_dir: Path, env: Mapping[str, str] | None = None
) -> _Child:
    log_path = state_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            env=None if env is None else dict(env),
            # Its own session: a Ctrl-C meant for pytest reaches only pytest, whose
            # context managers then stop the server in order.
            start_new_session=True,
        )
    return _Child(name=name, proc=proc, log=log_path)


def _wait_for(child: _Child, check: Callable[[], bool], *, what: str, timeout: float) -> None:
    """Poll `check` until true; fail early, with the log's tail, if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise AcmeError(
                f"{child.name} exited (code {child.proc.returncode}) while waiting for {what}; "
                f"read {child.log}. Last lines:\n{child.log_tail()}"
            )
        if check():
            return
        if time.monotonic() > deadline:
            raise AcmeError(
                f"{child.name} did not become {what} within {timeout:.0f}s; read {child.log}. "
                f"Last lines:\n{child.log_tail()}"
            )
        time.sleep(0.1)


def _free_port(taken: set[int], *, udp: bool = False) -> int:
    """A loopback port free for TCP (and UDP too when asked: DNS listens on both)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind((_LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            if udp:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    try:
                        probe.bind((_LOOPBACK, port))
                    except OSError:
                        continue
        if port not in taken:
            taken.add(port)
            return port


def _address_in_use(child: _Child) -> bool:
    tail = child.log_tail(200).lower()
    return "address already in use" in tail or "address in use" in tail


def _state_dir(path: Path) -> Path:
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # holds TSIG secrets and private keys
    return path


# --------------------------------------------------------------------------- DNS server


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key: its name, its base64 secret (kept out of repr) and the algorithm."""

    name: str
    secret: str = field(repr=False)
    algorithm: str = TSIG_ALGORITHM

    @classmethod
    def generate(cls, name: str) -> TsigKey:
        # 32 random bytes: the key length hmac-sha256 is designed for (tsig-keygen's too).
        return cls(name=name, secret=base64.b64encode(secrets.token_bytes(32)).decode())

    def dnspython_key(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.name, self.secret, algorithm=self.algorithm)


def _fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower() + "."


@dataclass(frozen=True, kw_only=True)
class DnsServer:
    """A running `named`. Query it on `host`:`port` (UDP and TCP).

    It resolves like a recursive resolver whose whole world is its zones: a CNAME into
    another of its zones is followed in the same answer, and a name outside every zone
    is NXDOMAIN at once (it is authoritative for the root zone too, so it never asks
    the Internet).
    """

    host: str
    port: int
    acme_zone: str
    tenant_zones: tuple[str, ...]
    acme_key: TsigKey
    tenant_key: TsigKey
    state_dir: Path
    log: Path

    @property
    def nameserver(self) -> str:
        """host:port, the form cert-manager and Pebble take."""
        return f"{self.host}:{self.port}"

    def settings(self) -> DnsSettings:
        """For adapters.dns: resolve through this server."""
        return DnsSettings(nameservers=(self.host,), port=self.port)

    def query(self, name: str, rdtype: str) -> list[str]:
        """The answer's records of `rdtype` for `name`, in presentation form (CNAMEs followed)."""
        request = dns.message.make_query(_fqdn(name), rdtype)
        response = dns.query.udp(request, self.host, port=self.port, timeout=3)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise AcmeError(f"{name} {rdtype}: {dns.rcode.to_text(response.rcode())}")
        wanted = dns.rdatatype.from_text(rdtype)
        return [
            rdata.to_text()
            for rrset in response.answer
            if rrset.rdtype == wanted
            for rdata in rrset
        ]

    # The tenant's side of DNS, done the way a tenant's DNS host would: a signed update.

    def set_cname(self, name: str, target: str) -> None:
        """Make `name` (in a tenant zone) a CNAME to `target`, replacing what was there."""
        self._replace(name, [("CNAME", _fqdn(target))])

    def set_a(self, name: str, *addresses: str) -> None:
        self._replace(name, [("A", address) for address in addresses])

    def remove(self, name: str) -> None:
        """Delete every record at `name` in its tenant zone."""
        self._replace(name, [])

    def _replace(self, name: str, records: Sequence[tuple[str, str]]) -> None:
        """One signed update: delete everything at `name`, then add `records` (type, value)."""
        owner = dns.name.from_text(_fqdn(name))
        zones = [z for z in self.tenant_zones if owner.is_subdomain(dns.name.from_text(z))]
        if not zones:
            raise AcmeError(f"{name} is in none of the tenant zones {', '.join(self.tenant_zones)}")
        zone = max(zones, key=len)
        key = self.tenant_key
        message = dns.update.UpdateMessage(
            zone, keyring=key.dnspython_key(), keyname=dns.name.from_text(key.name)
        )
        message.delete(owner)
        for rdtype, value in records:
            message.add(owner, ZONE_TTL, rdtype, value)
        response = dns.query.tcp(message, self.host, port=self.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise AcmeError(
                f"DNS update of {name} in {zone} refused: {dns.rcode.to_text(response.rcode())}"
            )


def _zone_file(zone: str, records: Sequence[str]) -> str:
    origin = _fqdn(zone)
    lines = [
        f"$ORIGIN {origin}",
        f"$TTL {ZONE_TTL}",
        # Negative answers are cached for the SOA minimum: keep it at the TTL.
        f"@ SOA ns.{origin} hostmaster.{origin} 1 60 60 600 {ZONE_TTL}",
        f"@ NS ns.{origin}",
        f"ns A {_LOOPBACK}",
        *records,
    ]
    return "\n".join(lines) + "\n"


def _named_conf(
    directory: Path,
    port: int,
    zones: Mapping[str, str],
    keys: Sequence[TsigKey],
    updaters: Mapping[str, str],
) -> str:
    """named.conf: `zones` maps zone -> file, `updaters` zone -> the key allowed to update."""
    parts = [
        "options {",
        f'  directory "{directory}";',
        f'  pid-file "{directory}/named.pid";',
        f'  session-keyfile "{directory}/session.key";',
        f'  managed-keys-directory "{directory}";',
        f"  listen-on port {port} {{ {_LOOPBACK}; }};",
        "  listen-on-v6 { none; };",
        # Recursion lets the server follow a CNAME into another of its zones within one
        # answer, as the recursive resolvers Let's Encrypt and cert-manager use do;
        # Pebble only reads TXT records from the answer it gets. An authoritative-only
        # server (BIND or Knot) stops at the CNAME.
        "  recursion yes;",
        f"  allow-recursion {{ {_LOOPBACK}; }};",
        f"  allow-query-cache {{ {_LOOPBACK}; }};",
        # Nothing here is signed, and there is no trust anchor for test zones.
        "  dnssec-validation no;",
        "  notify no;",
        # A test changes records and expects the next query to see the change.
        "  max-cache-ttl 1;",
        "  max-ncache-ttl 1;",
        "};",
        # No rndc channel: we stop named with a signal.
        "controls { };",
    ]
    for key in keys:
        parts.append(f'key "{key.name}" {{ algorithm {key.algorithm}; secret "{key.secret}"; }};')
    for zone, file_name in zones.items():
        update = ""
        if zone in updaters:
            update = f' allow-update {{ key "{updaters[zone]}"; }};'
        parts.append(f'zone "{zone}" {{ type primary; file "{file_name}";{update} }};')
    return "\n".join(parts) + "\n"


def _zones_served(port: int, zones: Sequence[str]) -> bool:
    """True when the server on `port` answers an SOA query for every zone."""
    for zone in zones:
        try:
            response = dns.query.udp(
                dns.message.make_query(_fqdn(zone), "SOA"), _LOOPBACK, port=port, timeout=1
            )
        except (dns.exception.DNSException, OSError):
            return False
        if response.rcode() != dns.rcode.NOERROR or not response.answer:
            return False
    return True


@contextmanager
def running_dns_server(
    state_dir: Path,
    *,
    tenant_zones: Mapping[str, Sequence[str]],
    acme_zone: str = DEFAULT_ACME_ZONE,
    acme_records: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[DnsServer]:
    """`named` serving `tenant_zones` (zone -> zone-file lines relative to it) and `acme_zone`.

    Record lines use zone-file syntax, e.g. `"_acme-challenge.portal CNAME
    portal.acme-challenges.portal-domains.test."`; SOA and NS are added.
    """
    named = locate("named", environ)
    state_dir = _state_dir(state_dir)
    acme_zone = acme_zone.rstrip(".").lower()
    tenants = {zone.rstrip(".").lower(): list(records) for zone, records in tenant_zones.items()}
    if acme_zone in tenants:
        raise AcmeError(f"{acme_zone} is both a tenant zone and the ACME zone")

    acme_key = TsigKey.generate("portal-domains-acme")
    tenant_key = TsigKey.generate("tenant-dns-admin")
    files: dict[str, str] = {".": "root.zone"}
    # The root zone has no records of its own: it only makes every other name NXDOMAIN.
    (state_dir / "root.zone").write_text(
        f"$TTL {ZONE_TTL}\n@ SOA ns.root. hostmaster.root. 1 60 60 600 {ZONE_TTL}\n"
        f"@ NS ns.root.\nns.root. A {_LOOPBACK}\n"
    )
    for zone, records in [*tenants.items(), (acme_zone, list(acme_records))]:
        files[zone] = f"{zone}.zone"
        (state_dir / files[zone]).write_text(_zone_file(zone, records))
        # A journal from an earlier run would replay that run's updates on top.
        (state_dir / f"{zone}.zone.jnl").unlink(missing_ok=True)
    updaters = dict.fromkeys(tenants, tenant_key.name)
    updaters[acme_zone] = acme_key.name
    served = [zone for zone in files if zone != "."]

    taken: set[int] = set()
    child: _Child | None = None
    port = 0
    try:
        for attempt in range(_BIND_ATTEMPTS):
            port = _free_port(taken, udp=True)
            conf = state_dir / "named.conf"
            write_private(
                conf,
                _named_conf(state_dir, port, files, [acme_key, tenant_key], updaters).encode(),
            )
            # -g: foreground, log to stderr (our log file); no -u: run as the caller.
            child = _launch("named", [str(named), "-g", "-c", str(conf)], state_dir)
            log.info("started named (pid %d) on %s:%d", child.proc.pid, _LOOPBACK, port)
            try:
                _wait_for(
                    child,
                    functools.partial(_zones_served, port, served),
                    what=f"serving {', '.join(served)}",
                    timeout=timeout,
                )
                break
            except AcmeError:
                child.stop()
                if attempt == _BIND_ATTEMPTS - 1 or not _address_in_use(child):
                    raise
        assert child is not None
        yield DnsServer(
            host=_LOOPBACK,
            port=port,
            acme_zone=acme_zone,
            tenant_zones=tuple(tenants),
            acme_key=acme_key,
            tenant_key=tenant_key,
            state_dir=state_dir,
            log=child.log,
        )
    finally:
        if child is not None:
            child.stop()


# --------------------------------------------------------------------------- Pebble


def _tls_pair(folder: Path, common_name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a serving certificate for loopback: (ca.crt, tls.crt, tls.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = self_signed_ca(ca_key, f"{common_name} test CA", days=30)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(_LOOPBACK)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.crt", folder / "tls.crt", folder / "tls.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    write_private(
        key_path,
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    # The CA key is not kept: nothing signs with it again.
    return ca_path, cert_path, key_path


def _https_get(url: str, ca_file: Path, timeout: float = 5.0) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass(frozen=True, kw_only=True)
class PebbleServer:
    """A running Pebble. Its HTTPS certificate chains to `tls_ca_file` (not to its ACME roots)."""

    directory_url: str
    management_url: str
    tls_ca_file: Path
    state_dir: Path
    log: Path

    def tls_ca_pem(self) -> bytes:
        return self.tls_ca_file.read_bytes()

    def issuing_root(self) -> x509.Certificate:
        """The root Pebble signs certificates under; a new one every time Pebble starts."""
        return self._management_certs("/roots/0")[0]

    def intermediates(self) -> list[x509.Certificate]:
        return self._management_certs("/intermediates/0")

    def _management_certs(self, path: str) -> list[x509.Certificate]:
        try:
            status, body = _https_get(self.management_url + path, self.tls_ca_file)
        except (urllib.error.URLError, OSError) as error:
            raise AcmeError(f"cannot reach Pebble's management API: {error}") from None
        if status != 200:
            raise AcmeError(f"GET {self.management_url}{path}: HTTP {status}")
        return x509.load_pem_x509_certificates(body)


def _pebble_ready(directory_url: str, ca_file: Path) -> bool:
    try:
        status, body = _https_get(directory_url, ca_file, timeout=2)
    except (urllib.error.URLError, OSError):
        return False
    return status == 200 and b"newOrder" in body


@contextmanager
def running_pebble(
    state_dir: Path,
    *,
    dns_server: DnsServer,
    environ: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[PebbleServer]:
    """Pebble on loopback, validating challenges against `dns_server`."""
    pebble = locate("pebble", environ)
    state_dir = _state_dir(state_dir)
    ca_file, cert_file, key_file = _tls_pair(state_dir / "tls", "pebble")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}
    env.update(
        {
            # Pebble sleeps up to 15 s before each validation and rejects 5% of
            # nonces to exercise clients' retries; tests want speed and determinism.
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
    )
    taken: set[int] = set()
    child: _Child | None = None
    directory_url = management_url = ""
    try:
        for attempt in range(_BIND_ATTEMPTS):
            api, management, http01, tlsalpn = (_free_port(taken) for _ in range(4))
            config = {
                "pebble": {
                    "listenAddress": f"{_LOOPBACK}:{api}",
                    "managementListenAddress": f"{_LOOPBACK}:{management}",
                    "certificate": str(cert_file),
                    "privateKey": str(key_file),
                    # Where Pebble would connect for HTTP-01 and TLS-ALPN-01; unused for
                    # DNS-01 but required, so point them at ports nothing listens on.
                    "httpPort": http01,
                    "tlsPort": tlsalpn,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                    "keyAlgorithm": "ecdsa",
                    "retryAfter": {"authz": 1, "order": 1},
                    "profiles": {
                        "default": {"description": "loopback tests", "validityPeriod": 7776000}
                    },
                }
            }
            config_path = state_dir / "pebble-config.json"
            config_path.write_text(json.dumps(config, indent=2) + "\n")
            argv = [str(pebble), "-config", str(config_path), "-dnsserver", dns_server.nameserver]
            child = _launch("pebble", argv, state_dir, env)
            directory_url = f"https://{_LOOPBACK}:{api}/dir"
            management_url = f"https://{_LOOPBACK}:{management}"
            log.info("started pebble (pid %d): %s", child.proc.pid, directory_url)
            try:
                _wait_for(
                    child,
                    functools.partial(_pebble_ready, directory_url, ca_file),
                    what=f"serving {directory_url}",
                    timeout=timeout,
                )
                break
            except AcmeError:
                child.stop()
                if attempt == _BIND_ATTEMPTS - 1 or not _address_in_use(child):
                    raise
        assert child is not None
        yield PebbleServer(
            directory_url=directory_url,
            management_url=management_url,
            tls_ca_file=ca_file,
            state_dir=state_dir,
            log=child.log,
        )
    finally:
        if child is not None:
            child.stop()


# --------------------------------------------------------------------------- cert-manager


@dataclass(frozen=True, kw_only=True)
class CertManagerController:
    pid: int
    log: Path
    cluster_resource_namespace: str
    version: str


def _ensure_namespace(cluster: ClusterInfo, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    response = api_request(cluster, "POST", "/api/v1/namespaces", body)
    if not response.ok and response.status != 409:
        raise AcmeError(f"creating namespace {name}: HTTP {response.status}: {response.message}")


@contextmanager
def running_cert_manager(
    state_dir: Path,
    cluster: ClusterInfo,
    *,
    dns_server: DnsServer,
    cluster_resource_namespace: str = CLUSTER_RESOURCE_NAMESPACE,
    verbosity: int = 2,
    extra_args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[CertManagerController]:
    """cert-manager's ACME controllers against `cluster`, self-checking DNS-01 at `dns_server`.

    Creates the cluster resource namespace (where ClusterIssuers' Secrets live), as
    cert-manager's installation would.
    """
    controller = locate("cert-manager-controller", environ)
    state_dir = _state_dir(state_dir)
    _ensure_namespace(cluster, cluster_resource_namespace)
    argv = [
        str(controller),
        f"--kubeconfig={cluster.kubeconfig}",
        f"--cluster-resource-namespace={cluster_resource_namespace}",
        f"--dns01-nameserver={dns_server.nameserver}",
        # The Secret goes with its Certificate (loopback/cluster.py runs the garbage
        # collector), as a removed tenant's must in production too.
        "--enable-certificate-owner-ref=true",
        f"-v={verbosity}",
        *extra_args,
    ]
    child = _launch("cert-manager-controller", argv, state_dir)
    log.info("started cert-manager-controller (pid %d)", child.proc.pid)
    try:

        def started() -> bool:
            try:
                return "controllers started" in child.log.read_text(errors="replace")
            except OSError:
                return False

        _wait_for(child, started, what="running its controllers", timeout=timeout)
        yield CertManagerController(
            pid=child.proc.pid,
            log=child.log,
            cluster_resource_namespace=cluster_resource_namespace,
            version=read_versions().cert_manager,
        )
    finally:
        child.stop()


# --------------------------------------------------------------------------- manifests


def tsig_secret_manifest(
    dns_server: DnsServer,
    *,
    namespace: str = CLUSTER_RESOURCE_NAMESPACE,
    name: str = TSIG_SECRET_NAME,
    key: str = TSIG_SECRET_KEY,
) -> dict[str, Any]:
    """The Secret holding the delegation zone's TSIG secret (base64 text, as BIND writes it)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {key: dns_server.acme_key.secret},
    }


def cluster_issuer_manifest(
    name: str,
    *,
    pebble: PebbleServer,
    dns_server: DnsServer,
    email: str = "acme-account@portal-domains.test",
    tsig_secret_name: str = TSIG_SECRET_NAME,
    tsig_secret_key: str = TSIG_SECRET_KEY,
) -> dict[str, Any]:
    """An ACME ClusterIssuer for Pebble solving DNS-01 by RFC 2136 in the delegation zone.

    `cnameStrategy: Follow` makes cert-manager write the TXT record where the
    tenant's `_acme-challenge.<host>` CNAME points, i.e. into our zone.
    """
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": name},
        "spec": {
            "acme": {
                "server": pebble.directory_url,
                "caBundle": base64.b64encode(pebble.tls_ca_pem()).decode(),
                "email": email,
                "privateKeySecretRef": {"name": f"{name}-account-key"},
                "solvers": [
                    {
                        "dns01": {
                            "cnameStrategy": "Follow",
                            "rfc2136": {
                                "nameserver": dns_server.nameserver,
                                "tsigKeyName": dns_server.acme_key.name,
                                "tsigAlgorithm": CERT_MANAGER_TSIG_ALGORITHM,
                                "tsigSecretSecretRef": {
                                    "name": tsig_secret_name,
                                    "key": tsig_secret_key,
                                },
                            },
                        }
                    }
                ],
            }
        },
    }


def prepare_for_issuance(
    cluster: ClusterInfo,
    *,
    dns_server: DnsServer,
    pebble: PebbleServer,
    folder: Path,
    namespaces: Sequence[str] = ("istio-system", "msp"),
) -> Path:
    """What a platform team provisions before the stack runs; returns Pebble's root (PEM file).

    The gateway's and the routes' namespaces, and the Secret with the delegation zone's
    TSIG key (the stack config names only the Secret).
    """
    for namespace in namespaces:
        create(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    create(cluster, tsig_secret_manifest(dns_server))
    root_pem = folder / "pebble-root.pem"
    root_pem.write_bytes(pebble.issuing_root().public_bytes(serialization.Encoding.PEM))
    return root_pem


def dns01_stack_config(
    *,
    issuer: str,
    kubeconfig: Path,
    pebble: PebbleServer,
    dns_server: DnsServer,
    acme_zone: str,
    tsig_secret_name: str = TSIG_SECRET_NAME,
) -> dict[str, Any]:
    """`Pulumi.<env>.yaml` content for cluster mode issuing from Pebble by DNS-01 delegation.

    What `demo --cluster` and the issuance e2e run: the stack declares the ClusterIssuer
    (core.manifests.cluster_issuer) from these keys.
    """
    config = {
        "mode": "cluster",
        "kubeconfig": str(kubeconfig),
        "issuerName": issuer,
        "allowedIssuers": [issuer],
        "acmeServer": pebble.directory_url,
        "acmeEmail": "platform@portal-domains.test",
        "acmeCaBundle": base64.b64encode(pebble.tls_ca_pem()).decode(),
        "acmeSolver": "dns01",
        "acmeDns01Zone": acme_zone,
        "acmeRfc2136Nameserver": dns_server.nameserver,
        "acmeRfc2136TsigKeyName": dns_server.acme_key.name,
        "acmeRfc2136TsigSecret": tsig_secret_name,
    }
    return {"config": {f"portal-domains:{key}": value for key, value in config.items()}}


# --------------------------------------------------------------------------- API helpers


def create(cluster: ClusterInfo, obj: Mapping[str, Any], *, exist_ok: bool = True) -> None:
    """POST `obj`; an existing object of that name is fine when `exist_ok`."""
    path = object_path(obj).rsplit("/", 1)[0]
    response = api_request(cluster, "POST", path, dict(obj))
    if response.ok or (exist_ok and response.status == 409):
        return
    raise AcmeError(
        f"creating {obj['kind']} {obj['metadata']['name']}: HTTP {response.status}: "
        f"{response.message}"
    )


def wait_until_ready(
    cluster: ClusterInfo, path: str, *, timeout: float, interval: float = 0.5
) -> dict[str, Any]:
    """GET `path` until its Ready condition is True; raise with the last reason otherwise."""
    deadline = time.monotonic() + timeout
    last = "no Ready condition yet"
    while True:
        response = api_request(cluster, "GET", path)
        if response.ok:
            ready = condition(response.body, "Ready")
            if ready is not None and ready.get("status") == "True":
                body: dict[str, Any] = response.body
                return body
            if ready is not None:
                last = f"{ready.get('reason')}: {ready.get('message')}"
        else:
            last = f"HTTP {response.status}: {response.message}"
        if time.monotonic() > deadline:
            raise AcmeError(f"{path} not Ready after {timeout:.0f}s ({last})")
        time.sleep(interval)
