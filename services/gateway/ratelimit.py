"""Per-source rate limits: a token bucket per source (`GATEWAY_RATE_PER_S` sustained, `GATEWAY_RATE_BURST` at once).

Pure and clock-injected. One bucket per authenticated source, so the table is as large as the registry at
most. Each gateway instance limits on its own: behind a load balancer of n instances a source may make up to
n times the rate.
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
        bucket = self._buckets.setdefault(source, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.at) * self.rate_per_s)
        bucket.at = max(bucket.at, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate_per_s))
