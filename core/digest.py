"""A digest of what a stack must hold, to skip engine runs that would change nothing.

`desired_digest` hashes every object the stack declares for the rows
(`core.manifests.desired_documents`, which already folds in the stack config)
together with the config itself and a fingerprint of the code that turns rows
into resources and checks them (the program, the manifests, the policy pack).
Equal digests mean an `up` would declare exactly what the last successful run
declared, so the reconciler may skip the engine; drift in the cluster is caught
by the drift check and by a periodic full pass, not by this digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from core.config import StackConfig
from core.manifests import desired_documents
from core.records import DomainRecord


def desired_digest(
    records: Iterable[DomainRecord], config: StackConfig, code_fingerprint: str
) -> str:
    documents = desired_documents(records, config)
    payload = {
        "code": code_fingerprint,
        "config": dataclasses.asdict(config),
        "documents": documents,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """What the last successful run of a stack declared, and when the last full pass ran."""

    digest: str
    full_pass_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "full_pass_at": self.full_pass_at.isoformat()}

    @staticmethod
    def from_json(data: Any) -> RecordedRun | None:
        """None for anything malformed: the caller then runs the engine (safe)."""
        if not isinstance(data, dict):
            return None
        digest, at = data.get("digest"), data.get("full_pass_at")
        if not isinstance(digest, str) or len(digest) != 64 or not isinstance(at, str):
            return None
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
        return RecordedRun(digest=digest, full_pass_at=when)


def skip_reason(
    recorded: RecordedRun | None,
    digest: str,
    *,
    now: datetime,
    full_pass_every: timedelta,
) -> str | None:
    """Why the engine may be skipped, or None when it must run."""
    if recorded is None or recorded.digest != digest:
        return None
    if now - recorded.full_pass_at >= full_pass_every:
        return None  # the periodic full pass is due
    return (
        "nothing changed since the last successful run "
        f"(digest {digest[:12]}; next full pass after "
        f"{(recorded.full_pass_at + full_pass_every).isoformat(timespec='seconds')})"
    )


StateObjects = list[dict[str, Any]]


def valid_objects(data: Any) -> StateObjects | None:
    """State objects as recorded ({slug, urn, outputs}), or None for anything malformed
    (the caller then reads the state or runs the engine)."""
    if not isinstance(data, list) or not all(
        isinstance(o, dict) and {"slug", "urn", "outputs"} <= o.keys() for o in data
    ):
        return None
    return data
