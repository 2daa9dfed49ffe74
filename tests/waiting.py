"""Waiting on a condition instead of sleeping a fixed time: `eventually` (sync) and `eventually_async`.

A test that sleeps "long enough" is slow when the machine is fast and flaky when it
is slow. These poll a predicate until it holds and return what it returned (so the
value can be asserted on), or fail with an `AssertionError` naming what was awaited
and the last value or error seen. An `AssertionError` raised by the predicate counts
as "not yet", so a predicate may be a block of asserts.

    eventually(lambda: proc.poll() is not None, timeout=5, what="the worker exits")
    records = await eventually_async(lambda: read_some(topic), what="3 records")  # an async predicate too
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

TIMEOUT_S = 10.0
INTERVAL_S = 0.05


def _not_yet(deadline: float, timeout: float, what: str, seen: object) -> None:
    """Return to poll again, or fail once the deadline passed, with the last value or error `seen`."""
    if time.monotonic() < deadline:
        return
    last = f"last error: {seen}" if isinstance(seen, AssertionError) else f"last value: {seen!r}"
    failure = AssertionError(f"{what or 'the condition'} did not hold within {timeout:g} s ({last})")
    raise failure from seen if isinstance(seen, AssertionError) else None


def eventually(predicate: Callable[[], T], *, timeout: float = TIMEOUT_S, interval: float = INTERVAL_S,
               what: str = "") -> T:
    """Call `predicate` every `interval` seconds until it returns a truthy value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except AssertionError as exc:
            _not_yet(deadline, timeout, what, exc)
        else:
            if result:
                return result
            _not_yet(deadline, timeout, what, result)
        time.sleep(interval)


@overload
async def eventually_async(predicate: Callable[[], Awaitable[T]], *, timeout: float = ...,  # noqa: ASYNC109
                           interval: float = ..., what: str = ...) -> T: ...
@overload
async def eventually_async(predicate: Callable[[], T], *, timeout: float = ...,  # noqa: ASYNC109
                           interval: float = ..., what: str = ...) -> T: ...


async def eventually_async(predicate: Callable[[], T | Awaitable[T]], *,
                           timeout: float = TIMEOUT_S,  # noqa: ASYNC109 - the same call shape as `eventually`
                           interval: float = INTERVAL_S, what: str = "") -> T:
    """`eventually` inside an event loop: the loop keeps running between polls; `predicate` may be async."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            outcome = predicate()
            result = await outcome if inspect.isawaitable(outcome) else outcome
        except AssertionError as exc:
            _not_yet(deadline, timeout, what, exc)
        else:
            if result:
                return result
            _not_yet(deadline, timeout, what, result)
        await asyncio.sleep(interval)
