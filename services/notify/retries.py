"""Jobs waiting out their back-off, released by one owned task instead of loose event-loop timers."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RetryQueue(Generic[T]):
    """`put(delay, item)` hands `item` to `release` once `delay` seconds have passed; `run` does the releasing.

    A failing `release` fails `run`, whose owner sees it (a `call_later` callback's error would only be logged
    by the event loop); pending items go with the run.
    """

    def __init__(self, release: Callable[[T], None]) -> None:
        self._release = release
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, delay_s: float, item: T) -> None:
        due = asyncio.get_running_loop().time() + delay_s
        heapq.heappush(self._heap, (due, next(self._order), item))
        self._changed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            while self._heap and self._heap[0][0] <= loop.time():
                self._release(heapq.heappop(self._heap)[2])
            wait = self._heap[0][0] - loop.time() if self._heap else None
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result when the event is set in the
            # turn its task is cancelled, and the cancellation is lost: this loop went on waiting for an event
            # nothing would set, and the dispatcher's stop never returned (1 run in ~20 of the circuit tests)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()
