"""Per-source rate limits: a token bucket per source (`GATEWAY_RATE_PER_S` sustained, `GATEWAY_RATE_BURST` at once).

Pure and clock-injected. One bucket per authenticated source, so the table is as large as the registry at
most. Each gateway instance limits on its own: behind a load balancer of n instances a source may make up to
n times the rate. The same buckets count failed signatures per peer address (`wait` before a body is read,
`take` on a failure); that table holds at most `max_keys` addresses, the least recently seen dropped first.
Bytes held at once are budgets of their own: `InFlight` for bodies read before their signature is known, `Budget`
for others (each request's share of it: `Held`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Over = Literal["key", "total"]
"""The limit a byte budget met: the key's own (a peer address's, a source's), or the total of all keys."""


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

    def available(self, key: str, now: float) -> float:
        """The tokens `key` has now (a key never seen: the whole burst); none is taken."""
        return float(self.burst) if key not in self._buckets else self._refilled(key, now).tokens

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


class InFlight:
    """Bytes read, per key, of requests not yet vouched for, within what the key's `allowance` has left: a whole
    `bytes_per_token` per token (the failed-signature allowance of a peer address, a body at the limit per failure
    left); and at most `total` for all keys together. The allowance alone is checked before a body and spent once it
    failed: signed requests sent at once all passed it (200 from one address: 2,000 MiB read and hashed, review of
    2026-12-02). Counting bytes as they arrive, not whole bodies up front, lets many small requests run at once. The
    total is for the addresses one attacker has (a few on loopback, endless ones in IPv6): 516 connections from six
    held 516 MiB, and every connection slot (audit of 2026-12-06)."""

    def __init__(self, allowance: RateLimiter, bytes_per_token: int, total: int) -> None:
        self.allowance, self.bytes_per_token, self.total = allowance, bytes_per_token, total
        self.held: dict[str, int] = {}
        """Only keys with bytes in flight: no more than requests are being read."""
        self.all = 0

    def take(self, key: str, size: int, now: float) -> Over | None:
        """Count `size` more bytes for `key` (None), unless that passes what its allowance left stands for ("key")
        or the total ("total")."""
        held = self.held.get(key, 0) + size
        if held > math.floor(self.allowance.available(key, now)) * self.bytes_per_token:
            return "key"
        if self.all + size > self.total:
            return "total"
        self.held[key] = held
        self.all += size
        return None

    def release(self, key: str, size: int) -> None:
        """A request's bytes no longer count (its body was verified or refused)."""
        if not size:
            return
        self.all -= size
        if (left := self.held.pop(key, 0) - size) > 0:
            self.held[key] = left


class Budget:
    """Bytes held at once: at most `total` in all, and at most `per_key` by any one key. Bytes may be held in a key's
    share alone first (`in_total=False`) and counted in the total later (`count`)."""

    def __init__(self, total: int, per_key: int | None = None) -> None:
        self.total = total
        self.per_key = total if per_key is None else per_key
        self.held = 0
        """Bytes counted in the total."""
        self.by_key: dict[str, int] = {}
        """Only keys holding bytes."""

    def take(self, size: int, key: str = "", in_total: bool = True) -> Over | None:
        """Hold `size` more bytes for `key` (None), unless that passes its share ("key") or, `in_total`, the total
        ("total")."""
        mine = self.by_key.get(key, 0) + size
        if mine > self.per_key:
            return "key"
        if in_total and self.held + size > self.total:
            return "total"
        if size:
            self.held += size if in_total else 0
            self.by_key[key] = mine
        return None

    def count(self, size: int) -> Over | None:
        """Count `size` bytes a key holds already in the total too (None), unless that passes it ("total")."""
        if self.held + size > self.total:
            return "total"
        self.held += size
        return None

    def release(self, size: int, key: str = "", counted: int | None = None) -> None:
        """Give back `size` bytes of `key`'s, `counted` of them (all by default) in the total."""
        if not size:
            return
        self.held -= size if counted is None else counted
        if (left := self.by_key.pop(key, 0) - size) > 0:
            self.by_key[key] = left


class Held:
    """What one request holds of a `Budget` under its `key`, grown as its body arrives and given back all at once: in
    its key's share while the body is read, and in the total too once it is in (`counted`), when it is loaded whole.
    A body still arriving costs no memory yet (`bodies.Spool`): held in the total, slow uploads of two sources kept
    every other source out (503) for as long as they took (review of 2026-12-06)."""

    def __init__(self, budget: Budget, key: str) -> None:
        self.budget, self.key, self.size, self.counted = budget, key, 0, 0

    def grow_to(self, size: int, in_total: bool = False) -> Over | None:
        """Hold `size` bytes in the key's share (None; nothing more when it holds that already), and, `in_total`, in
        the total too, unless the budget refuses."""
        if size > self.size:
            if (over := self.budget.take(size - self.size, self.key, in_total=False)) is not None:
                return over
            self.size = size
        if in_total and self.counted < self.size:
            if (over := self.budget.count(self.size - self.counted)) is not None:
                return over
            self.counted = self.size
        return None

    def release(self) -> None:
        self.budget.release(self.size, self.key, self.counted)
        self.size = self.counted = 0
