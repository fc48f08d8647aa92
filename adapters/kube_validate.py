"""Server-side validation of manifests: would this API server accept these objects?

`validate_manifests` runs `kubectl apply --server-side --dry-run=server
--validate=strict`, so the answer comes from the API server itself (the CRD
schemas, strict field validation, admission, namespace existence) and nothing is
stored. kubectl rather than our own HTTP client because it already handles every
kubeconfig credential form (tokens, client certificates, exec plugins).

A rejected object is data, not an exception: one `ValidationProblem` per object,
with the API server's own message. Only "could not ask at all" raises
(kubectl missing, API server unreachable, credentials refused).

How: one batch call for all documents; when it fails, the objects it did not
accept are re-applied one at a time, because kubectl's batch errors do not
reliably name the object they belong to (`namespaces "x" not found` names none).
Missing namespaces are reported, never created: validation must not change the
cluster.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ErrorKind, PortalDomainsError

log = logging.getLogger(__name__)

FIELD_MANAGER = "portal-domains"
REQUEST_TIMEOUT_SECONDS = 30
# Per-object re-checks only run after a rejection; a few at a time keeps a large
# rejected export (e.g. a missing namespace for every tenant) to seconds.
RECHECK_WORKERS = 8

# kubectl's wrapper around a Status the API server returned.
_SERVER_ERROR = re.compile(r"^Error from server(?: \((?P<reason>[A-Za-z]+)\))?: (?P<message>.*)$")
# kubectl's wordings for "could not talk to the API server at all": these are not
# verdicts on an object, so they must raise instead of becoming problems.
_UNREACHABLE = (
    "Unable to connect to the server",
    "The connection to the server",
    "You must be logged in to the server",
    "error loading config file",
    "couldn't get current server API group list",
    "connection refused",
    "i/o timeout",
    "no such host",
    "context deadline exceeded",
)
# Defence in depth: kubectl does not print credentials at the default verbosity,
# but a message must never carry one into logs or CLI output.
_SECRET = re.compile(r"(?i)(bearer\s+|token[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=-]{8,}")


class KubeValidationUnavailable(PortalDomainsError):
    """The API server could not be asked (unreachable, bad kubeconfig, credentials refused)."""

    code = "kube_validation_unavailable"
    kind = ErrorKind.UNAVAILABLE
    retryable = True


class KubectlNotFound(KubeValidationUnavailable):
    """kubectl is not installed where we were told to find it."""

    code = "kubectl_not_found"
    retryable = False


@dataclass(frozen=True, kw_only=True)
class ValidationProblem:
    """One object the API server rejected, and its reason in the server's words."""

    index: int  # position in the validated sequence (-1: the batch as a whole)
    api_version: str
    kind: str
    namespace: str | None
    name: str
    message: str
    reason: str | None = None  # the Status reason kubectl shows (NotFound, BadRequest, ...)

    @property
    def object_ref(self) -> str:
        if self.index < 0:
            return "the documents together"
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    def line(self) -> str:
        return f"{self.object_ref}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "reason": self.reason,
            "message": self.message,
        }


def validate_manifests(
    documents: Sequence[Mapping[str, Any]],
    *,
    kubeconfig: Path,
    kubectl: str,
    cache_dir: Path | None = None,
    timeout: float = 120.0,
) -> list[ValidationProblem]:
    """The objects of `documents` the API server rejects (empty: all accepted).

    Raises KubectlNotFound / KubeValidationUnavailable when no verdict could be had.
    `cache_dir` is kubectl's discovery cache (default: kubectl's own, ~/.kube/cache).
    """
    if not documents:
        return []
    runner = _Kubectl(kubectl=kubectl, kubeconfig=kubeconfig, cache_dir=cache_dir, timeout=timeout)
    batch = runner.apply(documents)
    if batch.returncode == 0:
        return []
    # A failed batch is either a verdict on some objects or no verdict at all; ask
    # the server something trivial to tell the two apart.
    runner.check_reachable()
    accepted = _accepted_keys(batch.stdout)
    wanted = Counter(_name_key(doc) for doc in documents)
    # Trust the batch only for keys it accepted every time they occur (the same
    # kind/name may appear in two namespaces, and `-o name` omits the namespace).
    suspects = [
        i for i, doc in enumerate(documents) if accepted[_name_key(doc)] < wanted[_name_key(doc)]
    ]
    with ThreadPoolExecutor(max_workers=RECHECK_WORKERS) as pool:
        verdicts = list(pool.map(lambda i: runner.apply([documents[i]]), suspects))
    problems = []
    for i, verdict in zip(suspects, verdicts, strict=True):
        if verdict.returncode != 0:
            problems.append(_problem(i, documents[i], verdict.stderr))
    if not problems:
        # The batch failed but every object passes alone: report it rather than
        # call a failed check a success.
        problems.append(_problem(-1, {}, batch.stderr or "kubectl apply failed"))
    return problems


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True, kw_only=True)
class _Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True, kw_only=True)
class _Kubectl:
    kubectl: str
    kubeconfig: Path
    cache_dir: Path | None
    timeout: float

    def _base(self) -> list[str]:
        argv = [
            self.kubectl,
            f"--kubeconfig={self.kubeconfig}",
            f"--request-timeout={REQUEST_TIMEOUT_SECONDS}s",
        ]
        if self.cache_dir is not None:
            argv.append(f"--cache-dir={self.cache_dir}")
        return argv

    def _run(self, argv: list[str], stdin: str | None = None) -> _Result:
        # Only the command line is logged: it names the kubeconfig, never its contents.
        log.debug("running %s", " ".join(argv))
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
                timeout=self.timeout,
            )
        except FileNotFoundError:
            raise KubectlNotFound(f"kubectl not found: {self.kubectl}") from None
        except PermissionError:
            raise KubectlNotFound(f"kubectl is not executable: {self.kubectl}") from None
        except subprocess.TimeoutExpired:
            raise KubeValidationUnavailable(
                f"kubectl did not answer within {self.timeout:.0f}s (kubeconfig {self.kubeconfig})"
            ) from None
        result = _Result(
            returncode=proc.returncode, stdout=proc.stdout, stderr=_redact(proc.stderr.strip())
        )
        if result.returncode != 0 and any(marker in result.stderr for marker in _UNREACHABLE):
            raise KubeValidationUnavailable(
                f"cannot reach the API server of kubeconfig {self.kubeconfig}: "
                f"{_last_lines(result.stderr)}"
            )
        return result

    def apply(self, documents: Sequence[Mapping[str, Any]]) -> _Result:
        # JSON documents in a YAML stream: exact types (a "3000" stays a string).
        stream = "\n---\n".join(json.dumps(doc) for doc in documents) + "\n"
        argv = [
            *self._base(),
            "apply",
            "--server-side",
            "--dry-run=server",
            f"--field-manager={FIELD_MANAGER}",
            "--validate=strict",
            "-o",
            "name",
            "-f",
            "-",
        ]
        return self._run(argv, stdin=stream)

    def check_reachable(self) -> None:
        result = self._run([*self._base(), "get", "--raw", "/version"])
        if result.returncode != 0:
            raise KubeValidationUnavailable(
                f"cannot ask the API server of kubeconfig {self.kubeconfig}: "
                f"{_last_lines(result.stderr) or f'kubectl exited {result.returncode}'}"
            )


def _name_key(doc: Mapping[str, Any]) -> str:
    """The `kind.group/name` kubectl's name printer writes for an object."""
    api_version = str(doc.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    kind = str(doc.get("kind") or "").lower()
    name = str((doc.get("metadata") or {}).get("name") or "")
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"


def _accepted_keys(stdout: str) -> Counter[str]:
    return Counter(line.strip() for line in stdout.splitlines() if line.strip())


def _problem(index: int, doc: Mapping[str, Any], stderr: str) -> ValidationProblem:
    metadata = doc.get("metadata") or {}
    namespace = metadata.get("namespace")
    reason, message = _server_message(stderr)
    return ValidationProblem(
        index=index,
        api_version=str(doc.get("apiVersion") or ""),
        kind=str(doc.get("kind") or ""),
        namespace=str(namespace) if namespace else None,
        name=str(metadata.get("name") or ""),
        message=message,
        reason=reason,
    )


def _server_message(stderr: str) -> tuple[str | None, str]:
    """The API server's message without kubectl's wrapper; kubectl's own error otherwise."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    # Warnings (deprecations) precede the error; the verdict is what is left.
    verdict = [line for line in lines if not line.startswith("Warning:")] or lines
    for line in verdict:
        match = _SERVER_ERROR.match(line)
        if match:
            return match["reason"], match["message"].strip()
    text = "\n".join(verdict).strip() or "rejected without a message"
    return None, text.removeprefix("error: ")


def _last_lines(text: str, count: int = 3) -> str:
    return " | ".join(line for line in text.splitlines()[-count:] if line.strip())


def _redact(text: str) -> str:
    return _SECRET.sub(lambda m: m.group(1) + "[redacted]", text)
