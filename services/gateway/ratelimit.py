"""Per-source rate limits: a token bucket per source (`GATEWAY_RATE_PER_S` sustained, `GATEWAY_RATE_BURST` at once).

Pure and clock-injected. One bucket per authenticated source, so the table is as large as the registry at
most. Each gateway instance limits on its own: behind a load balancer of n instances a source may make up to
n times the rate. The same buckets count failed signatures per peer address (`wait` before a body is read,
`take` on a failure); that table holds at most `max_keys` addresses, the least recently seen dropped first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, max_keys: int | None = None) -> None:
        """`max_keys`: for keys that are not a bounded set (peer addresses): past it, the least recently seen key is
        forgotten (its bucket starts full again), so the table and the work per call stay bounded."""
        self.rate_per_s, self.burst, self.max_keys = rate_per_s, burst, max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, source: str, now: float) -> int:
        """0 when `source` may make a request now (one token taken), else whole seconds until it may."""
        bucket = self._refilled(source, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return self._wait(bucket)

    def give_back(self, key: str, now: float) -> None:
        """Return a token `take` took for a request that turned out not to be the key's own (a replayed signature)."""
        bucket = self._refilled(key, now)
        bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)

    def wait(self, key: str, now: float) -> int:
        """0 when `key` has a token now (none is taken), else whole seconds until it has."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0
        bucket = self._refilled(key, now)
        return 0 if bucket.tokens >= 1.0 else self._wait(bucket)

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, key: str, now: float) -> _Bucket:
        if self.max_keys is None:
            bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
        else:  # most recently seen last (dicts keep insertion order): the first key is the one to forget
            found = self._buckets.pop(key, None)
            bucket = self._buckets[key] = found if found is not None else _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                del self._buckets[next(iter(self._buckets))]
        bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.at) * self.rate_per_s)
        bucket.at = max(bucket.at, now)
        return bucket

    def _wait(self, bucket: _Bucket) -> int:
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate_per_s))
