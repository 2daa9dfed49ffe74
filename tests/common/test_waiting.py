"""tests/waiting.py: `eventually` returns as soon as the condition holds and fails clearly when it never does."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.waiting import eventually, eventually_async

pytestmark = pytest.mark.unit


def test_returns_the_first_truthy_value() -> None:
    """The predicate's value is returned once it is truthy, after as many polls as needed."""
    calls: list[int] = []

    def third_time() -> list[int]:
        calls.append(1)
        return calls if len(calls) >= 3 else []

    assert eventually(third_time, interval=0.001) == [1, 1, 1]


def test_assertion_errors_mean_not_yet() -> None:
    """A predicate made of asserts is retried; the last assertion is reported when time runs out."""
    start = time.monotonic()

    def never() -> bool:
        assert 1 + 1 == 3, "arithmetic still holds"
        return True

    with pytest.raises(AssertionError, match=r"the sum did not hold within 0\.1 s \(last error: arithmetic"):
        eventually(never, timeout=0.1, interval=0.01, what="the sum")
    assert time.monotonic() - start < 2


def test_other_errors_are_not_swallowed() -> None:
    """An unexpected exception in the predicate propagates at once instead of being retried."""
    def broken() -> bool:
        raise KeyError("x")

    with pytest.raises(KeyError):
        eventually(broken, timeout=5)


async def test_async_variant_lets_the_loop_run_and_awaits_async_predicates() -> None:
    """Between polls the event loop runs other tasks; an async predicate is awaited."""
    flag = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, flag.set)
    assert await eventually_async(flag.is_set, timeout=5) is True

    async def value() -> int:
        return 7

    assert await eventually_async(value, timeout=1) == 7
    with pytest.raises(AssertionError, match=r"last value: 0"):
        await eventually_async(lambda: 0, timeout=0.05, interval=0.01)
