"""A small read-only Kubernetes API client: what the workflow asks the cluster in cluster mode.

It reads a kubeconfig (current context; bearer token or client certificate;
the cluster's CA) and answers the questions the registration workflow has:
is the tenant's cert-manager Certificate Ready, and if not, what do its
CertificateRequest, Order and Challenge say; do the Gateway and VirtualService
exist at the generation we applied. Writes go through Pulumi, never through here.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.certificates import CertificateState, certificate_progress, condition
from core.errors import ErrorKind, PortalDomainsError

CERT_MANAGER = "/apis/cert-manager.io/v1"
ACME = "/apis/acme.cert-manager.io/v1"
ISTIO = "/apis/networking.istio.io/v1"


class KubeError(PortalDomainsError):
    """The API server could not be asked (unreachable, bad kubeconfig, refused)."""

    code = "kubernetes_unavailable"
    kind = ErrorKind.UNAVAILABLE
    retryable = True


@dataclass(frozen=True, kw_only=True)
class ObjectVersion:
    kind: str
    name: str
    namespace: str
    resource_version: str
    generation: int


class KubeClient:
    def __init__(
        self,
        *,
        server: str,
        token: str | None,
        ssl_context: ssl.SSLContext,
        timeout: float = 10.0,
    ) -> None:
        self.server = server.rstrip("/")
        self._token = token
        self._ssl = ssl_context
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"KubeClient(server={self.server!r})"

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeClient:
        try:
            config: Any = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise KubeError(f"cannot read kubeconfig {path}: {err}") from None
        if not isinstance(config, Mapping):
            raise KubeError(f"kubeconfig {path} is not a map")
        context = _named(config, "contexts", config.get("current-context"), path)
        cluster = _named(config, "clusters", context.get("cluster"), path)
        user = _named(config, "users", context.get("user"), path)
        server = cluster.get("server")
        if not isinstance(server, str) or not server.startswith("https://"):
            raise KubeError(f"kubeconfig {path}: the cluster's server must be an https URL")
        ctx = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            ctx.load_verify_locations(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
        elif cluster.get("certificate-authority"):
            ctx.load_verify_locations(cafile=str(cluster["certificate-authority"]))
        if user.get("client-certificate-data") and user.get("client-key-data"):
            # ssl wants files; they live only as long as loading them takes.
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
                cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                ctx.load_cert_chain(str(cert), str(key))
        elif user.get("client-certificate") and user.get("client-key"):
            ctx.load_cert_chain(str(user["client-certificate"]), str(user["client-key"]))
        token = user.get("token")
        return cls(server=server, token=token if isinstance(token, str) else None, ssl_context=ctx)

    # ------------------------------------------------------------------ raw
    def get(self, path: str) -> Any | None:
        """GET a JSON document; None when the API server says 404."""
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.server + path, headers=headers)
        for attempt in range(4):
            try:
                with urllib.request.urlopen(
                    request, timeout=self.timeout, context=self._ssl
                ) as res:
                    return json.loads(res.read())
            except urllib.error.HTTPError as err:
                if err.code == 404:
                    return None
                detail = err.read().decode(errors="replace")[:300]
                # 429: the API server asks to come back (e.g. a cache still filling).
                if err.code == 429 and attempt < 3:
                    time.sleep(min(float(err.headers.get("Retry-After") or 1), 5.0))
                    continue
                raise KubeError(f"GET {path}: HTTP {err.code} {detail}") from None
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise KubeError(f"cannot reach the API server {self.server}: {err}") from None
        raise KubeError(f"GET {path}: the API server kept answering 429")

    # ------------------------------------------------------------------ questions
    def certificate_state(self, namespace: str, name: str, dns_name: str) -> CertificateState:
        """cert-manager's view of a Certificate (core.certificates decides what it means)."""
        cert = self.get(f"{CERT_MANAGER}/namespaces/{namespace}/certificates/{name}")
        orders: list[Any] = []
        challenges: list[Any] = []
        if cert is not None:
            ready = condition(cert, "Ready")
            if ready is None or ready.get("status") != "True":
                orders = (self.get(f"{ACME}/namespaces/{namespace}/orders") or {}).get("items", [])
                challenges = (self.get(f"{ACME}/namespaces/{namespace}/challenges") or {}).get(
                    "items", []
                )
        return certificate_progress(
            cert,
            dns_name=dns_name,
            orders=orders,
            challenges=challenges,
            where=f"{namespace}/{name}",
        )

    def live_object(self, manifest: Mapping[str, Any]) -> Any | None:
        """The stored object a manifest declares (None when absent)."""
        return self.get(object_path(manifest))

    def object_version(
        self, api: str, plural: str, kind: str, namespace: str, name: str
    ) -> ObjectVersion | None:
        path = f"{api}/namespaces/{urllib.parse.quote(namespace)}/{plural}/{name}"
        obj = self.get(path)
        if obj is None:
            return None
        meta = obj.get("metadata") or {}
        return ObjectVersion(
            kind=kind,
            name=name,
            namespace=namespace,
            resource_version=str(meta.get("resourceVersion", "")),
            generation=int(meta.get("generation", 0)),
        )


def object_path(manifest: Mapping[str, Any]) -> str:
    """The API path of the object a manifest declares (our kinds pluralise with an s)."""
    group_version = str(manifest["apiVersion"])
    base = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    meta = manifest.get("metadata") or {}
    plural = f"{str(manifest['kind']).lower()}s"
    name = urllib.parse.quote(str(meta["name"]))
    namespace = meta.get("namespace")
    if namespace:
        return f"{base}/namespaces/{urllib.parse.quote(str(namespace))}/{plural}/{name}"
    return f"{base}/{plural}/{name}"


def _named(config: Mapping[str, Any], section: str, name: Any, path: Path) -> Mapping[str, Any]:
    for entry in config.get(section) or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            body = entry.get(section[:-1])
            if isinstance(body, Mapping):
                return body
    raise KubeError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")
