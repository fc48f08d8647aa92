"""A real Kubernetes API server on loopback: etcd + kube-apiserver, with the cert-manager
and Istio CRDs installed, and kube-controller-manager running two of its controllers.

The tests use it to prove that the manifests we generate are accepted by a real API
server (server-side dry-run with strict field validation), and engineers run it with
`portal-domains dev-cluster up|down|status`. kube-controller-manager runs only the
garbage collector (objects owned by a deleted one go too, e.g. the Secret
cert-manager wrote for a removed Certificate) and the namespace controller. There is
no scheduler or kubelet: no Pod ever runs.

scripts/setup-kubernetes.sh builds the binaries and extracts the CRDs into a cache
folder keyed by the versions in scripts/toolchain/versions.env; this module finds them
there (binaries also on PATH). Everything a cluster needs lives in one state folder:
etcd data, certificates, the admin token, the kubeconfig, logs and `cluster.json`, the
record of the processes `start` launched. `stop` and `status` read that record, so they
work from another process (the CLI) and never touch a process they did not start.

Linux only: process identity is checked through /proc.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from loopback.pki import self_signed_ca, write_private
from stack.toolchain import VERSIONS_FILE, cache_root, read_pins

log = logging.getLogger(__name__)

SETUP_HINT = "run scripts/setup-kubernetes.sh (scripts/setup.sh runs it too)"

STATE_FILE = "cluster.json"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
# The first address of the range is the `kubernetes` Service; the serving certificate
# names it so in-cluster style clients could verify it too.
KUBERNETES_SERVICE_IP = "10.96.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
FIELD_MANAGER = "portal-domains-dev-cluster"
ADMIN_USER = "portal-domains-admin"
CLUSTER_NAME = "portal-domains-dev"

Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    """The loopback cluster could not be started, reached or stopped."""


# --------------------------------------------------------------------------- locating


@dataclass(frozen=True, kw_only=True)
class KubernetesVersions:
    kubernetes: str
    etcd: str
    cert_manager: str
    istio_crds: str

    @property
    def binaries_key(self) -> str:
        return f"kubernetes-{self.kubernetes}_etcd-{self.etcd}"

    @property
    def crds_key(self) -> str:
        return f"crds-cert-manager-{self.cert_manager}_istio-{self.istio_crds}"


@dataclass(frozen=True, kw_only=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    kube_controller_manager: Path


def read_versions(path: Path = VERSIONS_FILE) -> KubernetesVersions:
    values = read_pins(path)
    try:
        return KubernetesVersions(
            kubernetes=values["KUBERNETES_VERSION"],
            etcd=values["ETCD_VERSION"],
            cert_manager=values["CERT_MANAGER_VERSION"],
            istio_crds=values["ISTIO_CRDS_VERSION"],
        )
    except KeyError as missing:
        raise ClusterError(f"{path} lacks {missing.args[0]}") from None


def locate_binaries(environ: Mapping[str, str] | None = None) -> Binaries:
    """The cached build for the pinned versions if complete, else PATH."""
    env = os.environ if environ is None else environ
    versions = read_versions()
    bin_dir = cache_root(env) / "toolchain" / versions.binaries_key / "bin"
    names = ("kube-apiserver", "etcd", "kubectl", "kube-controller-manager")
    found: dict[str, Path] = {}
    if all(os.access(bin_dir / name, os.X_OK) for name in names):
        found = {name: bin_dir / name for name in names}
    else:
        for name in names:
            on_path = shutil.which(name, path=env.get("PATH", ""))
            if on_path:
                found[name] = Path(on_path)
    missing = [name for name in names if name not in found]
    if missing:
        raise ClusterError(
            f"{', '.join(missing)} not found in {bin_dir} nor on PATH: {SETUP_HINT} "
            f"(builds Kubernetes v{versions.kubernetes} and etcd v{versions.etcd})"
        )
    return Binaries(
        kube_apiserver=found["kube-apiserver"].resolve(),
        etcd=found["etcd"].resolve(),
        kubectl=found["kubectl"].resolve(),
        kube_controller_manager=found["kube-controller-manager"].resolve(),
    )


def locate_crds(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of CRD manifests (cert-manager's and Istio's) for the pinned versions."""
    versions = read_versions()
    folder = cache_root(environ) / "toolchain" / versions.crds_key
    if not any(folder.glob("*.yaml")):
        raise ClusterError(f"no CRD manifests in {folder}: {SETUP_HINT}")
    return folder


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True, kw_only=True)
class ClusterInfo:
    """How to reach a running loopback cluster. The token is kept out of repr()."""

    state_dir: Path
    kubeconfig: Path
    server: str
    token: str = field(repr=False)
    ca_file: Path
    pids: Mapping[str, int]
    etcd_url: str
    crds: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ClusterStatus:
    state: Literal["running", "degraded", "stopped"]
    server: str | None
    processes: Mapping[str, bool]
    readyz: str | None
    detail: str

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True, kw_only=True)
class ApiResponse:
    status: int
    body: Any
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The API server's own explanation (a Status object's message), else the raw text."""
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return str(self.body["message"])
        return self.text


def api_request(
    info: ClusterInfo,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    timeout: float = 30.0,
) -> ApiResponse:
    """One authenticated call to the API server. HTTP errors are returned, not raised."""
    data: bytes | None = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(
        info.server + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {info.token}",
            "Content-Type": content_type,
            "Accept": "application/json",
        },
    )
    context = ssl.create_default_context(cafile=str(info.ca_file))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ClusterError(f"cannot reach the API server at {info.server}: {reason}") from None
    text = raw.decode(errors="replace")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    return ApiResponse(status=status, body=parsed, text=text)


# --------------------------------------------------------------------------- processes

# Children started by this Python process, so that stopping them also reaps them
# (an unreaped child stays a zombie that still looks alive to kill(pid, 0)).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot), or None when pid is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _proc_exe(pid: int) -> str | None:
    try:
        target = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    # A binary replaced on disk (a rebuild) still identifies the running process.
    return target.removesuffix(" (deleted)")


def _is_same_process(record: Mapping[str, Any]) -> bool:
    """True when the recorded pid is still the process `start` launched, and alive."""
    try:
        pid, start_ticks = int(record["pid"]), int(record["start_ticks"])
    except (KeyError, TypeError, ValueError):
        return False  # a damaged record identifies nothing we may signal
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return stat[1] == start_ticks and _proc_exe(pid) == record.get("executable")


def _launch(name: str, argv: list[str], state_dir: Path) -> dict[str, Any]:
    log_path = state_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            # Its own session: a Ctrl-C meant for the CLI or pytest does not reach it,
            # and it outlives `dev-cluster up`; stop() ends it explicitly.
            start_new_session=True,
        )
    _children[proc.pid] = proc
    stat = _proc_stat(proc.pid)
    return {
        "pid": proc.pid,
        "executable": argv[0],
        "start_ticks": stat[1] if stat else -1,
        "log": str(log_path),
    }


def _terminate(name: str, record: Mapping[str, Any], timeout: float) -> None:
    pid = record.get("pid")
    child = _children.pop(int(pid), None) if isinstance(pid, int) else None
    if child is not None:
        # Our own child: its pid cannot be reused before we reap it, so signal and
        # wait on it directly; that also reaps it (no zombie left for init).
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if child.poll() is not None:
                return
            child.send_signal(sig)
            try:
                child.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
        raise ClusterError(f"{name} (pid {pid}) survived SIGKILL; see {record.get('log')}")
    if not _is_same_process(record):
        log.info("%s (pid %s) is not running any more", name, pid)
        return
    # Started by another process (`dev-cluster up`): only /proc tells when it is gone.
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(int(record["pid"]), sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _is_same_process(record):
                return
            time.sleep(0.1)
    raise ClusterError(f"{name} (pid {pid}) survived SIGKILL; see {record.get('log')}")


# --------------------------------------------------------------------------- state file


def _state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(_state_path(state_dir).read_text())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise ClusterError(f"{_state_path(state_dir)} is not valid JSON: {error}") from None
    return state


def _write_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    tmp = _state_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(_state_path(state_dir))


# --------------------------------------------------------------------------- PKI


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_pki(pki: Path) -> dict[str, Path]:
    """A throwaway CA, a serving certificate for loopback, and the service-account key.

    The CA key is never written: nothing needs to sign with it after this.
    """
    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=365)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = self_signed_ca(ca_key, "portal-domains dev-cluster CA", days=365)
    ca_name = ca_cert.subject
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())

    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    # Service-account tokens are signed with RSA (RS256), which every client verifies.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    paths = {
        "ca": pki / "ca.crt",
        "server_cert": pki / "apiserver.crt",
        "server_key": pki / "apiserver.key",
        "sa_key": pki / "service-account.key",
        "sa_pub": pki / "service-account.pub",
    }
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["server_cert"].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    write_private(paths["server_key"], _pem_key(server_key))
    write_private(paths["sa_key"], _pem_key(sa_key))
    paths["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return paths


def _kubeconfig(server: str, ca_pem: bytes, token: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [
            {
                "name": CLUSTER_NAME,
                "context": {"cluster": CLUSTER_NAME, "user": ADMIN_USER, "namespace": "default"},
            }
        ],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


# --------------------------------------------------------------------------- flags


def etcd_argv(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        f"--name={CLUSTER_NAME}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        # The peer port is never used by a one-member cluster, but etcd binds it
        # anyway: keep it on loopback and off the default 2380.
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={CLUSTER_NAME}={peer}",
        "--initial-cluster-state=new",
        # Throwaway data (start() wipes it); fsync only slows tests down.
        "--unsafe-no-fsync",
    ]


def apiserver_argv(
    binary: Path,
    *,
    etcd_url: str,
    port: int,
    pki: Mapping[str, Path],
    token_file: Path,
) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        f"--secure-port={port}",
        "--bind-address=127.0.0.1",
        # Without it the server advertises the host's default-route address (and fails
        # to start on a host without one); loopback is the only address it serves on.
        "--advertise-address=127.0.0.1",
        # The endpoint reconciler would publish 127.0.0.1 as the `kubernetes` Service
        # endpoint, which endpoint validation rejects (loopback range) every few
        # seconds; kube-apiserver's own test server turns it off the same way.
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={pki['server_cert']}",
        f"--tls-private-key-file={pki['server_key']}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki['sa_pub']}",
        f"--service-account-signing-key-file={pki['sa_key']}",
        f"--token-auth-file={token_file}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        # The ServiceAccount admission plugin rejects every Pod whose namespace lacks
        # the `default` ServiceAccount, and only kube-controller-manager's serviceaccount
        # controller creates those; it does not run here, so Pods (e.g. cert-manager's
        # HTTP-01 solver) would be unstorable. Nothing mounts tokens without a kubelet.
        "--disable-admission-plugins=ServiceAccount",
    ]


# The controllers kube-controller-manager runs here (see the module doc).
CONTROLLERS = ("garbagecollector", "namespace")


def controller_manager_argv(binary: Path, *, kubeconfig: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--controllers={','.join(CONTROLLERS)}",
        # One instance: nothing to elect.
        "--leader-elect=false",
        # No metrics/health endpoint: readiness is read from its log instead.
        "--secure-port=0",
    ]


# What kube-controller-manager logs once each controller works (v1.37).
_STARTED_LINES = ("Proceeding to collect garbage", "Starting namespace controller")


def _controllers_started(log_path: Path) -> bool:
    text = _log_tail(log_path, 400)
    return all(line in text for line in _STARTED_LINES)


# --------------------------------------------------------------------------- start


def _say(progress: Progress | None, message: str) -> None:
    log.info("%s", message)
    if progress is not None:
        progress(message)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _port_clash(log_path: Path) -> bool:
    return "address already in use" in _log_tail(log_path, 200)


def _wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    record: Mapping[str, Any],
    name: str,
    what: str,
) -> None:
    """Poll `check` until true; fail early (naming the log) when the process died."""
    log_path = Path(str(record["log"]))
    deadline = time.monotonic() + timeout
    while True:
        if not _is_same_process(record):
            raise ClusterError(
                f"{name} exited while waiting for {what}; read {log_path}. Last lines:\n"
                f"{_log_tail(log_path)}"
            )
        try:
            if check():
                return
        except ClusterError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{name} did not become {what} within {timeout:.0f}s; read {log_path}"
            )
        time.sleep(0.2)


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            body: Any = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("health") == "true"


def _readyz(info: ClusterInfo) -> str:
    response = api_request(info, "GET", "/readyz", timeout=5)
    return response.text.strip() if response.ok else f"HTTP {response.status}: {response.text}"


def _is_ready(info: ClusterInfo) -> bool:
    return _readyz(info) == "ok"


def _apply_crds(info: ClusterInfo, kubectl: Path, crds_dir: Path) -> tuple[str, ...]:
    """Server-side apply (the largest CRDs exceed the client-side annotation limit)."""
    log_path = info.state_dir / "kubectl-apply.log"
    argv = [
        str(kubectl),
        f"--kubeconfig={info.kubeconfig}",
        f"--cache-dir={info.state_dir / 'kubectl-cache'}",
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "-o",
        "name",
        "-f",
        str(crds_dir),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise ClusterError(
            f"kubectl apply of the CRDs in {crds_dir} failed (exit {proc.returncode}); "
            f"read {log_path}:\n{proc.stderr.strip()[-2000:]}"
        )
    prefix = "customresourcedefinition.apiextensions.k8s.io/"
    names = tuple(
        sorted(line.removeprefix(prefix) for line in proc.stdout.split() if line.startswith(prefix))
    )
    if not names:
        raise ClusterError(f"kubectl applied no CustomResourceDefinition from {crds_dir}")
    return names


def _unestablished(info: ClusterInfo, names: tuple[str, ...]) -> list[str]:
    response = api_request(info, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    if not response.ok:
        raise ClusterError(f"listing CRDs failed: HTTP {response.status}: {response.message}")
    established = set()
    for item in response.body.get("items") or []:
        # A CRD just created has no status yet (conditions: null).
        for condition in (item.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Established" and condition.get("status") == "True":
                established.add(item["metadata"]["name"])
    return [name for name in names if name not in established]


def start(
    state_dir: Path,
    *,
    progress: Progress | None = None,
    timeout: float = 120.0,
    environ: Mapping[str, str] | None = None,
) -> ClusterInfo:
    """Start etcd and kube-apiserver on loopback, install the CRDs, write the kubeconfig.

    A fresh cluster every time: previous etcd data in `state_dir` is discarded. Raises
    ClusterError when a cluster from `state_dir` is still running, or when any step
    fails (after stopping whatever it had started).
    """
    binaries = locate_binaries(environ)
    crds_dir = locate_crds(environ)
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)  # holds the admin token and private keys

    previous = _read_state(state_dir)
    if previous is not None:
        alive = [n for n, r in previous.get("processes", {}).items() if _is_same_process(r)]
        if alive:
            raise ClusterError(
                f"a cluster from {state_dir} is still running ({', '.join(alive)}); stop it first"
            )
        _state_path(state_dir).unlink()

    try:
        return _start(state_dir, binaries, crds_dir, progress, timeout)
    except BaseException:
        # Includes KeyboardInterrupt: never leave half a cluster behind.
        try:
            stop(state_dir)
        except ClusterError as error:
            log.warning("cleanup after a failed start: %s", error)
        raise


def _start(
    state_dir: Path,
    binaries: Binaries,
    crds_dir: Path,
    progress: Progress | None,
    timeout: float,
) -> ClusterInfo:
    started = time.monotonic()
    data_dir = state_dir / "etcd-data"
    shutil.rmtree(data_dir, ignore_errors=True)

    _say(progress, "generating the CA, serving certificate and service-account key")
    pki = _make_pki(state_dir / "pki")
    token = secrets.token_urlsafe(32)
    token_file = state_dir / "tokens.csv"
    # token,user,uid,"groups": system:masters is allowed everything, RBAC or not.
    write_private(token_file, f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'.encode())

    state: dict[str, Any] = {"processes": {}, "ports": {}}
    taken: set[int] = set()

    # A port that was free when picked can be taken before the server binds it; then
    # pick again rather than fail the run.
    for attempt in range(3):
        client_port, peer_port = _free_port(taken), _free_port(taken)
        etcd_url = f"http://127.0.0.1:{client_port}"
        _say(progress, f"starting etcd on {etcd_url} (data in {data_dir})")
        record = _launch(
            "etcd", etcd_argv(binaries.etcd, data_dir, client_port, peer_port), state_dir
        )
        state["processes"]["etcd"] = record
        state["ports"].update({"etcd_client": client_port, "etcd_peer": peer_port})
        _write_state(state_dir, state)
        try:
            _wait_until(
                functools.partial(_etcd_healthy, etcd_url),
                timeout=timeout,
                record=record,
                name="etcd",
                what="healthy",
            )
            break
        except ClusterError:
            if attempt == 2 or not _port_clash(Path(record["log"])):
                raise
            _terminate("etcd", record, 5.0)
            shutil.rmtree(data_dir, ignore_errors=True)

    info: ClusterInfo | None = None
    apiserver: dict[str, Any] = {}
    for attempt in range(3):
        port = _free_port(taken)
        server = f"https://127.0.0.1:{port}"
        _say(progress, f"starting kube-apiserver on {server}")
        argv = apiserver_argv(
            binaries.kube_apiserver,
            etcd_url=etcd_url,
            port=port,
            pki=pki,
            token_file=token_file,
        )
        apiserver = _launch("kube-apiserver", argv, state_dir)
        state["processes"]["kube-apiserver"] = apiserver
        state["ports"]["apiserver"] = port
        state["server"] = server
        _write_state(state_dir, state)
        info = ClusterInfo(
            state_dir=state_dir,
            kubeconfig=state_dir / "kubeconfig",
            server=server,
            token=token,
            ca_file=pki["ca"],
            pids={name: int(r["pid"]) for name, r in state["processes"].items()},
            etcd_url=etcd_url,
        )
        try:
            _wait_until(
                functools.partial(_is_ready, info),
                timeout=timeout,
                record=apiserver,
                name="kube-apiserver",
                what="ready (/readyz)",
            )
            break
        except ClusterError:
            if attempt == 2 or not _port_clash(Path(apiserver["log"])):
                raise
            _terminate("kube-apiserver", apiserver, 5.0)
    if info is None:  # unreachable: the loop either breaks with info set or raises
        raise ClusterError("kube-apiserver was not started")
    ready: ClusterInfo = info

    write_private(
        ready.kubeconfig, _kubeconfig(ready.server, pki["ca"].read_bytes(), token).encode()
    )
    _say(progress, f"API server ready after {time.monotonic() - started:.1f}s; installing CRDs")
    names = _apply_crds(ready, binaries.kubectl, crds_dir)

    _say(progress, f"waiting for {len(names)} CRDs to be Established")
    pending: list[str] = list(names)

    def all_established() -> bool:
        pending[:] = _unestablished(ready, names)
        return not pending

    try:
        _wait_until(
            all_established,
            timeout=timeout,
            record=apiserver,
            name="kube-apiserver",
            what="serving every CRD",
        )
    except ClusterError as error:
        raise ClusterError(f"{error}; not Established: {', '.join(pending)}") from None

    state["crds"] = list(names)
    state["kubeconfig"] = str(ready.kubeconfig)
    _write_state(state_dir, state)

    _say(progress, f"starting kube-controller-manager ({', '.join(CONTROLLERS)})")
    manager = _launch(
        "kube-controller-manager",
        controller_manager_argv(binaries.kube_controller_manager, kubeconfig=ready.kubeconfig),
        state_dir,
    )
    state["processes"]["kube-controller-manager"] = manager
    _write_state(state_dir, state)
    _wait_until(
        functools.partial(_controllers_started, Path(manager["log"])),
        timeout=timeout,
        record=manager,
        name="kube-controller-manager",
        what="running its controllers",
    )
    ready = dataclasses.replace(
        ready, pids={**ready.pids, "kube-controller-manager": int(manager["pid"])}
    )
    _say(
        progress,
        f"cluster ready in {time.monotonic() - started:.1f}s: {ready.server}, "
        f"kubeconfig {ready.kubeconfig}",
    )
    return dataclasses.replace(ready, crds=names)


# --------------------------------------------------------------------------- stop, status


def stop(state_dir: Path, *, progress: Progress | None = None, timeout: float = 20.0) -> bool:
    """Stop the processes `start` recorded in `state_dir`; True if any was running.

    A recorded pid that now belongs to another program (or was restarted) is left alone.
    Logs, certificates and the kubeconfig stay for inspection; the record goes.
    """
    state_dir = state_dir.resolve()
    state = _read_state(state_dir)
    if state is None:
        return False
    processes: dict[str, Any] = state.get("processes", {})
    was_running = False
    # The API server first, so it does not spend its last seconds retrying etcd.
    for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
        record = processes.get(name)
        if record is None:
            continue
        if _is_same_process(record):
            was_running = True
            _say(progress, f"stopping {name} (pid {record['pid']})")
        _terminate(name, record, timeout)
    _state_path(state_dir).unlink(missing_ok=True)
    return was_running


def load_info(state_dir: Path) -> ClusterInfo:
    """Connection details of the cluster `start` recorded in `state_dir`."""
    state_dir = state_dir.resolve()
    state = _read_state(state_dir)
    if state is None or "server" not in state:
        raise ClusterError(f"no cluster was started from {state_dir}")
    kubeconfig = state_dir / "kubeconfig"
    token = ""
    try:
        config: Any = yaml.safe_load(kubeconfig.read_text())
        token = str(config["users"][0]["user"]["token"])
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        # The kubeconfig is written once /readyz answered; before that, the token
        # file already holds the same token.
        try:
            token = (state_dir / "tokens.csv").read_text().split(",", 1)[0]
        except OSError:
            raise ClusterError(f"no credentials for the cluster in {state_dir}") from None
    ports = state.get("ports", {})
    return ClusterInfo(
        state_dir=state_dir,
        kubeconfig=kubeconfig,
        server=str(state["server"]),
        token=token,
        ca_file=state_dir / "pki" / "ca.crt",
        pids={name: int(r["pid"]) for name, r in state.get("processes", {}).items()},
        etcd_url=f"http://127.0.0.1:{ports.get('etcd_client', 0)}",
        crds=tuple(state.get("crds", ())),
    )


def status(state_dir: Path) -> ClusterStatus:
    """Whether the cluster recorded in `state_dir` runs, and what its /readyz says."""
    state_dir = state_dir.resolve()
    state = _read_state(state_dir)
    if state is None:
        return ClusterStatus(
            state="stopped",
            server=None,
            processes={},
            readyz=None,
            detail=f"no cluster recorded in {state_dir}",
        )
    processes = {
        name: _is_same_process(record) for name, record in state.get("processes", {}).items()
    }
    server = state.get("server")
    if not any(processes.values()):
        return ClusterStatus(
            state="stopped",
            server=server,
            processes=processes,
            readyz=None,
            detail="the recorded processes are gone (crashed or killed); start it again",
        )
    readyz: str | None = None
    try:
        readyz = _readyz(load_info(state_dir))
    except ClusterError as error:
        detail = str(error)
    else:
        detail = "ready" if readyz == "ok" else "the API server is not ready"
    healthy = all(processes.values()) and readyz == "ok" and "crds" in state
    if all(processes.values()) and readyz == "ok" and "crds" not in state:
        detail = "starting: CRDs are not installed yet"
    return ClusterStatus(
        state="running" if healthy else "degraded",
        server=server,
        processes=processes,
        readyz=readyz,
        detail=detail,
    )


@contextmanager
def running_cluster(state_dir: Path, *, progress: Progress | None = None) -> Iterator[ClusterInfo]:
    """A cluster for the duration of a `with` block (tests); always stopped afterwards."""
    info = start(state_dir, progress=progress)
    try:
        yield info
    finally:
        stop(state_dir, progress=progress)
