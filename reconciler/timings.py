"""Timing profiles for the registration workflow: how long each wait lasts.

PORTAL_DOMAINS_TIMINGS names a profile (`production`, the default, or `fast`
for the demo) or is a JSON object of `Timings` fields overriding production's
values, e.g. `{"dns_timeout": 600}`. The test suite keeps its own profile in
tests/ and passes it as JSON, so production code carries no test settings.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from core.settings import SettingsError
from reconciler import payloads as p

PRODUCTION = p.Timings()

# The demo (README main job): every wait in seconds.
FAST = p.Timings(
    dns_check_delays=(0.5, 1.0, 2.0),
    dns_timeout=20,
    cert_poll_interval=1,
    cert_timeout=60,
    cert_failure_grace=10,
    https_poll_interval=1,
    https_timeout=30,
    reconcile_wait_timeout=600,
    failed_retry_interval=30,
    watch_interval=5,
    watch_checks_before_continue_as_new=20,
)

PROFILES = {"production": PRODUCTION, "fast": FAST}
_FIELDS = {f.name: f for f in dataclasses.fields(p.Timings)}


def timings_for(spec: str) -> p.Timings:
    """The named profile, or production's values overridden by a JSON object."""
    if spec in PROFILES:
        return PROFILES[spec]
    try:
        overrides = json.loads(spec)
    except json.JSONDecodeError:
        overrides = None
    if not isinstance(overrides, dict):
        raise SettingsError(
            f"PORTAL_DOMAINS_TIMINGS={spec!r}: expected {' or '.join(PROFILES)} "
            "or a JSON object of timing fields"
        )
    values: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in _FIELDS:
            raise SettingsError(
                f"PORTAL_DOMAINS_TIMINGS: unknown field {key!r} (known: {', '.join(_FIELDS)})"
            )
        values[key] = _seconds(key, raw)
    return dataclasses.replace(PRODUCTION, **values)


def as_setting(timings: p.Timings) -> str:
    """The JSON form `timings_for` reads back (used to hand a profile to a process)."""
    return json.dumps(dataclasses.asdict(timings))


def _seconds(key: str, raw: object) -> object:
    if key == "dns_check_delays":
        if not isinstance(raw, list) or not raw or not all(_positive(v) for v in raw):
            raise SettingsError(f"PORTAL_DOMAINS_TIMINGS: {key} must be a list of positive numbers")
        return tuple(float(v) for v in raw)
    if not _positive(raw):
        raise SettingsError(f"PORTAL_DOMAINS_TIMINGS: {key} must be a positive number")
    if key in ("dns_required_matches", "watch_checks_before_continue_as_new"):
        if not isinstance(raw, int):
            raise SettingsError(f"PORTAL_DOMAINS_TIMINGS: {key} must be an integer")
        return raw
    return float(raw)  # type: ignore[arg-type]


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
