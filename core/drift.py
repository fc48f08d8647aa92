"""Drift: where a live object no longer says what we declared (pure comparison).

Used in cluster mode, where someone can `kubectl edit` an object we own. The
Pulumi provider's diff does not see such an edit once the editor's field
manager owns the changed fields, so the reconciler compares for itself and
has the drifted objects re-created.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def drifted_fields(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """Paths where `live` differs from `desired`: spec in full, our labels one by one."""
    problems: list[str] = []
    want_labels = (desired.get("metadata") or {}).get("labels") or {}
    have_labels = (live.get("metadata") or {}).get("labels") or {}
    for key, value in sorted(want_labels.items()):
        if have_labels.get(key) != value:
            problems.append(f"metadata.labels.{key}")
    _compare("spec", desired.get("spec"), live.get("spec"), problems)
    return problems


def _compare(path: str, want: Any, have: Any, problems: list[str]) -> None:
    if isinstance(want, Mapping) and isinstance(have, Mapping):
        for key in sorted(set(want) | set(have)):
            _compare(f"{path}.{key}", want.get(key), have.get(key), problems)
    elif want != have:
        problems.append(path)
