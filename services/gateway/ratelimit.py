"""Per-source rate limits: a token bucket per source (`GATEWAY_RATE_PER_S` sustained, `GATEWAY_RATE_BURST` at once).

Pure and clock-injected. One bucket per authenticated source, so the table is as large as the registry at
most. Each gateway instance limits on its own: behind a load balancer of n instances a source may make up to
n times the rate. The same buckets count failed signatures per peer address (`wait` before a body is read,
`take` on a failure); that table forgets full buckets (`forget_full`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s, self.burst = rate_per_s, burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, source: str, now: float) -> int:
        """0 when `source` may make a request now (one token taken), else whole seconds until it may."""
        bucket = self._refilled(source, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return self._wait(bucket)

    def wait(self, key: str, now: float) -> int:
        """0 when `key` has a token now (none is taken), else whole seconds until it has."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0
        bucket = self._refilled(key, now)
        return 0 if bucket.tokens >= 1.0 else self._wait(bucket)

    def forget_full(self, now: float) -> None:
        """Drop the buckets that are full again: for keys that are not a bounded set (peer addresses)."""
        refill_s = self.burst / self.rate_per_s
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < refill_s}

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.at) * self.rate_per_s)
        bucket.at = max(bucket.at, now)
        return bucket

    def _wait(self, bucket: _Bucket) -> int:
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate_per_s))
