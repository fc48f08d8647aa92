"""A stand-in for cert-manager + the ingress, for the demo and the end-to-end tests.

There is no Kubernetes cluster here, so nothing would ever issue the
certificates our stack declares. This watcher plays cert-manager's part: it
reads the Certificate documents that were pushed to nm-kube-config (what Argo CD
would apply) and has the loopback TLS server (our "ingress") serve a
certificate from a test CA for each dnsName; names that leave Git stop being
served. Everything upstream of it (Temporal, Pulumi, Git, DNS, TLS probing) is
real.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterable

import yaml

from loopback.tls_ingress import LocalTlsServer

log = logging.getLogger(__name__)


def certificate_hosts(documents: Iterable[str]) -> set[str]:
    hosts: set[str] = set()
    for text in documents:
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "Certificate":
                hosts.update(str(h) for h in (doc.get("spec") or {}).get("dnsNames") or [])
    return hosts


class CertManagerSimulator:
    def __init__(
        self,
        *,
        remote: str,
        manifest_root: str,
        tls: LocalTlsServer,
        branch: str = "main",
        interval_seconds: float = 0.5,
    ) -> None:
        self.remote = remote
        self.manifest_root = manifest_root.strip("/")
        self.tls = tls
        self.branch = branch
        self.interval = interval_seconds
        self.issued: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "--git-dir", self.remote, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return proc.stdout if proc.returncode == 0 else ""

    def _documents(self) -> list[str]:
        listing = self._git("ls-tree", "--name-only", f"{self.branch}:{self.manifest_root}")
        return [
            self._git("show", f"{self.branch}:{self.manifest_root}/{name}")
            for name in listing.split()
            if name.endswith(".yaml")
        ]

    def sync_once(self) -> None:
        wanted = certificate_hosts(self._documents())
        for host in sorted(wanted - self.issued):
            self.tls.issue(host)
            log.info("simulated cert-manager issued a certificate for %s", host)
        for host in sorted(self.issued - wanted):
            self.tls.forget(host)
        self.issued = wanted

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync_once()

    def __enter__(self) -> CertManagerSimulator:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
