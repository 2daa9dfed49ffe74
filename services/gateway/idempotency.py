"""`Idempotency-Key`: a retried request gets the first answer and publishes nothing again.

Keys are scoped by source and remembered for a TTL with a fingerprint of the
body; the same key with another body is refused. Only final answers (2xx, 4xx)
are remembered: after a 503 the retry really retries. The store is in memory,
per gateway process (see docs/integrators.md for what that means behind a load
balancer: intake's de-duplication by event id is the second line).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stored:
    fingerprint: str
    status: int
    body: dict[str, Any]
    expires: float


def fingerprint(body: bytes, query: str) -> str:
    return hashlib.sha256(query.encode() + b"\n" + body).hexdigest()


class IdempotencyStore:
    def __init__(self, ttl_s: float, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._done: OrderedDict[tuple[str, str], Stored] = OrderedDict()
        self._in_flight: set[tuple[str, str]] = set()

    def lookup(self, scope: tuple[str, str], now: float | None = None) -> Stored | None:
        now = time.monotonic() if now is None else now
        stored = self._done.get(scope)
        if stored is not None and stored.expires < now:
            del self._done[scope]
            return None
        return stored

    def begin(self, scope: tuple[str, str]) -> bool:
        """False when the same key is being processed right now."""
        if scope in self._in_flight:
            return False
        self._in_flight.add(scope)
        return True

    def finish(self, scope: tuple[str, str], fp: str, status: int, body: dict[str, Any] | None) -> None:
        self._in_flight.discard(scope)
        if body is None:
            return
        self._done[scope] = Stored(fp, status, body, time.monotonic() + self.ttl_s)
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
