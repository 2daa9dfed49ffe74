"""Noticing that this worker's event loop stood still long enough for its consumer group to have moved on.

A process paused by SIGSTOP, a stalled VM or a long GC pause sends no heartbeats;
past the session timeout the group gives its partitions to another worker, but the
paused one learns this only when it next talks to the coordinator, and until then it
would keep acting on what it holds (a zombie). `StallWatch.watch` ticks every 100 ms
as a supervised task; a tick that comes later than `limit_s` means the loop stood
still, and from then on `check` raises `WorkerStalled` (a `KafkaError`, so the
runtime restarts the run from Kafka). Services call `check` right before an action a
zombie must not take: a provider call, a changelog write (ADR 0012).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError

TICK_S = 0.1


class WorkerStalled(KafkaError):
    """The event loop stood still long enough for the group to have moved on: the run restarts."""


def stall_limit_s(session_timeout_ms: int, heartbeat_interval_ms: int) -> float:
    """How long a loop may stand still before it may have missed enough heartbeats to be evicted."""
    return max(1.0, (session_timeout_ms - 2 * heartbeat_interval_ms) / 1000)


class StallWatch:
    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s, self.clock = limit_s, clock
        self._tick = clock()
        self._stalled = False

    async def watch(self) -> None:
        """Tick for as long as the run lasts; raises `WorkerStalled` once a tick came too late."""
        self._tick = self.clock()
        while True:
            await asyncio.sleep(TICK_S)
            self.check()
            self._tick = self.clock()

    def check(self) -> None:
        """Raise `WorkerStalled` if the loop stood still past the limit (now, or at any time before)."""
        gap = self.clock() - self._tick
        if self._stalled or gap > self.limit_s:
            self._stalled = True
            raise WorkerStalled(f"event loop stood still for {gap:.1f} s")
