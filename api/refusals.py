"""The audit of refused requests, bounded per caller so refusals cannot flood a log.

Every refusal (401, 403, a refused body, 429) is audited as `outcome=denied`
with who asked in the row's detail: `caller_tenant_id`, `caller_role`,
`caller_issuer` (none for an unauthenticated caller). Two bounds keep one
caller from filling a tenant's audit log:

- Collapse: identical refusals (same caller, logged tenant, action and error
  code) within one window write one row. The repeats are counted and written
  as one more row (`detail.count` = how many, `detail.collapsed` = true) once
  the window is over: when a later refusal finds it over, or at shutdown.
- Budget: each row a caller's refusals write takes a token from the caller's
  bucket (all unauthenticated callers share one). Past it, refusals are only
  counted, and written as one row per caller and window in the caller's own
  log (its tenant, or the platform log for operators and unauthenticated
  callers), never in the tenant it targeted.

The platform log is the nil tenant id, which no tenant can have (and which
core.canonical.parse_tenant_id refuses, so no API caller can read it); it holds
the refusals nobody's tenant should see, such as 401s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from api.ratelimit import RateLimiter
from db.service import MAX_AUDITED_INPUT, PLATFORM_LOG, DomainService

logger = logging.getLogger(__name__)

# Role claims are free text from the token: recorded, but cut.
MAX_AUDITED_ROLE = 64
ANONYMOUS = "anonymous"


@dataclass(frozen=True, kw_only=True)
class Requester:
    """Who a refusal is attributed to."""

    # The budget's key: the same person in the same tenant and role.
    key: tuple[str, ...]
    actor: str
    # Where refusals past the budget are logged.
    home: UUID
    tenant_id: UUID | None = None
    role: str | None = None
    issuer: str | None = None

    @classmethod
    def anonymous(cls, address: str | None) -> Requester:
        return cls(
            key=(ANONYMOUS,),
            actor=f"{ANONYMOUS}:{(address or 'unknown')[:64]}",
            home=PLATFORM_LOG,
        )

    def attribution(self) -> dict[str, Any]:
        return {
            "caller_tenant_id": str(self.tenant_id) if self.tenant_id is not None else None,
            "caller_role": self.role[:MAX_AUDITED_ROLE] if self.role is not None else None,
            "caller_issuer": self.issuer,
        }


@dataclass(frozen=True, kw_only=True)
class Refusal:
    caller: Requester
    tenant_id: UUID  # whose log
    action: str
    code: str
    message: str
    domain: str | None = None


@dataclass
class _Window:
    opened: float
    last: Refusal
    # Refusals not written yet (the repeats, or all of an over-budget window).
    count: int = 0
    targets: set[UUID] = field(default_factory=set)
    overflow: bool = False


_Key = tuple[object, ...]


class RefusalAuditor:
    def __init__(
        self,
        service: DomainService,
        *,
        per_minute: int,
        window_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._window = float(window_seconds)
        self._clock = clock
        self._budget: RateLimiter[tuple[str, ...]] = RateLimiter(per_minute, clock=clock)
        self._open: dict[_Key, _Window] = {}
        # Opening order is closing order: every window is equally long.
        self._order: deque[_Key] = deque()
        self._lock = threading.Lock()

    def record(self, refusal: Refusal) -> None:
        """Audit `refusal` now, or count it into a row written when its window closes."""
        write: Refusal | None = None
        with self._lock:
            now = self._clock()
            due = self._close(now)
            caller = refusal.caller
            key: _Key = (caller.key, caller.actor, refusal.tenant_id, refusal.action, refusal.code)
            window = self._open.get(key)
            if window is not None:
                window.count += 1
                window.last = refusal
            elif self._budget.acquire(caller.key).allowed:
                self._start(key, _Window(opened=now, last=refusal))
                write = refusal
            else:
                overflow_key: _Key = (caller.key, caller.actor, "overflow")
                window = self._open.get(overflow_key)
                if window is None:
                    window = _Window(opened=now, last=refusal, overflow=True)
                    self._start(overflow_key, window)
                window.count += 1
                window.last = refusal
                window.targets.add(refusal.tenant_id)
        for closed in due:
            self._write_window(closed)
        if write is not None:
            self._write(write, tenant_id=write.tenant_id, reason=_reason(write), extra={})

    def flush(self) -> None:
        """Write every counted refusal now (at shutdown)."""
        with self._lock:
            due = [w for w in self._open.values() if w.count]
            self._open.clear()
            self._order.clear()
        for window in due:
            self._write_window(window)

    def _start(self, key: _Key, window: _Window) -> None:
        self._open[key] = window
        self._order.append(key)

    def _close(self, now: float) -> list[_Window]:
        due: list[_Window] = []
        while self._order:
            key = self._order[0]
            window = self._open[key]
            if now - window.opened < self._window:
                break
            self._order.popleft()
            del self._open[key]
            if window.count:
                due.append(window)
        return due

    def _write_window(self, window: _Window) -> None:
        last = window.last
        extra: dict[str, Any] = {
            "count": window.count,
            "collapsed": True,
            "window_seconds": int(self._window),
        }
        if not window.overflow:
            self._write(last, tenant_id=last.tenant_id, reason=_reason(last), extra=extra)
            return
        extra["targets"] = len(window.targets)
        self._write(
            last,
            tenant_id=last.caller.home,
            reason=(
                f"audit_budget_exceeded: {window.count} more refused requests of this caller "
                f"(to {len(window.targets)} tenant(s)); the last: {_reason(last)}"
            ),
            extra=extra,
        )

    def _write(
        self, refusal: Refusal, *, tenant_id: UUID, reason: str, extra: Mapping[str, Any]
    ) -> None:
        self._service.audit_denied(
            tenant_id,
            refusal.action,
            refusal.caller.actor,
            domain=refusal.domain[:MAX_AUDITED_INPUT] if refusal.domain is not None else None,
            reason=reason,
            detail={"count": 1, **refusal.caller.attribution(), "code": refusal.code, **extra},
        )


def _reason(refusal: Refusal) -> str:
    return f"{refusal.code}: {refusal.message}"[:1000]
