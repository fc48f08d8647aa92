"""Token buckets: per tenant for mutations, per caller for attempts and refusal audits.

Each tenant's bucket holds up to `per_minute` tokens and refills at
`per_minute / 60` tokens a second, so a tenant may burst `per_minute`
mutations and then sustain `per_minute` a minute. A refused attempt says how
long until one token is back (the Retry-After header).

The buckets live in this process: with several API replicas each enforces
its own limit. That bounds abuse of the workflow hook per replica, which is
what the limit is for; it is not a billing quota.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar
from uuid import UUID

K = TypeVar("K", bound=Hashable)

# Past this many buckets, full ones are dropped: a full bucket behaves exactly
# like a missing one, so memory stays bounded by recently active tenants.
_PRUNE_ABOVE = 10_000


@dataclass(frozen=True, kw_only=True)
class RateDecision:
    allowed: bool
    # Whole seconds until a token is available again (0 when allowed).
    retry_after: int


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter(Generic[K]):
    """One token bucket per key (a tenant, a caller)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[K, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def per_minute(self) -> int:
        return int(self._capacity)

    def __len__(self) -> int:
        """How many buckets are held."""
        with self._lock:
            return len(self._buckets)

    def acquire(self, key: K) -> RateDecision:
        """Take one token from the key's bucket if there is one."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _PRUNE_ABOVE:
                    self._prune(now)
                bucket = _Bucket(tokens=self._capacity, updated=now)
                self._buckets[key] = bucket
            self._refill(bucket, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return RateDecision(allowed=True, retry_after=0)
            wait = (1.0 - bucket.tokens) / self._rate
            return RateDecision(allowed=False, retry_after=max(1, math.ceil(wait)))

    def _refill(self, bucket: _Bucket, now: float) -> None:
        # max(): a clock that steps back must not drain the bucket.
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self._capacity, bucket.tokens + elapsed * self._rate)
        bucket.updated = max(bucket.updated, now)

    def _prune(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            self._refill(bucket, now)
            if bucket.tokens >= self._capacity:
                del self._buckets[key]


class TenantRateLimiter(RateLimiter[UUID]):
    """Mutations per tenant per minute (PORTAL_DOMAINS_API_RATE_LIMIT)."""
