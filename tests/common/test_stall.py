"""The stall watch: a loop that stood still past the limit is noticed, and stays fenced."""

from __future__ import annotations

import asyncio

import pytest

from services.common.stall import StallWatch, WorkerStalled, stall_limit_s

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_gap_past_the_limit_fences_for_good() -> None:
    """Within the limit `check` passes; after a longer gap it raises, and keeps raising once the loop runs again."""
    clock = Clock()
    watch = StallWatch(4.0, clock)
    clock.now += 3.9
    watch.check()
    clock.now += 0.2
    with pytest.raises(WorkerStalled):
        watch.check()
    with pytest.raises(WorkerStalled):
        watch.check()


async def test_the_watch_task_ends_the_run_after_a_stall() -> None:
    """The ticking task raises WorkerStalled (a KafkaError: the runtime restarts the run) when a tick came too late."""
    clock = Clock()
    watch = StallWatch(1.0, clock)
    task = asyncio.create_task(watch.watch())
    await asyncio.sleep(0.25)
    assert not task.done()
    clock.now += 5  # as if SIGSTOPped for 5 s between two ticks
    with pytest.raises(WorkerStalled):
        await asyncio.wait_for(task, 2)


def test_the_limit_leaves_two_heartbeats_of_margin() -> None:
    """Session 10 s, heartbeat 3 s: a loop still for more than 4 s may have been evicted; never under 1 s."""
    assert stall_limit_s(10_000, 3_000) == 4.0
    assert stall_limit_s(6_000, 3_000) == 1.0
