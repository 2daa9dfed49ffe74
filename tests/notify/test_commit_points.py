"""Commit points per consumer and the retry queue: the pure parts of notify's offset commits and back-off."""

from __future__ import annotations

import asyncio

import pytest

from services.notify.offsets import OffsetTracker
from services.notify.retries import RetryQueue
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit


def test_taking_one_consumers_commit_points_leaves_the_others() -> None:
    """Commit points taken for some partitions leave the other partitions' points for their own consumer."""
    t: OffsetTracker[str] = OffsetTracker()
    t.add("dossier-0", 4, 0)
    t.add("announcement-0", 9, 0)
    assert t.take_committable({"dossier-0"}) == {"dossier-0": 5}
    assert t.take_committable({"dossier-0"}) == {}
    assert t.take_committable() == {"announcement-0": 10}


def test_a_refused_commit_is_put_back_unless_the_partition_left() -> None:
    """Restored points are committed next time, never behind a newer point, and not for a forgotten partition."""
    t: OffsetTracker[str] = OffsetTracker()
    t.add("p", 1, 0)
    t.add("gone", 1, 0)
    taken = t.take_committable()
    t.add("p", 2, 0)
    t.forget("gone")
    t.restore(taken)
    assert t.take_committable() == {"p": 3}


def test_forgetting_a_partition_starts_its_next_epoch_alone() -> None:
    """Each revocation of a partition changes its epoch (what a record fetched before it is checked against), and no
    other partition's."""
    t: OffsetTracker[str] = OffsetTracker()
    assert t.epoch("p") == t.epoch("q") == 0
    t.forget("p")
    t.forget("p")
    assert (t.epoch("p"), t.epoch("q")) == (2, 0)


async def test_retry_queue_releases_each_item_after_its_delay_in_due_order() -> None:
    """Items come out when due, earliest first, whatever order they were put in."""
    released: list[str] = []
    queue: RetryQueue[str] = RetryQueue(released.append)
    runner = asyncio.create_task(queue.run())
    try:
        queue.put(0.3, "late")
        queue.put(0.01, "early")
        await eventually_async(lambda: released, timeout=2, interval=0.005, what="the early item")
        assert released == ["early"] and len(queue) == 1
        await eventually_async(lambda: len(released) == 2, timeout=2, interval=0.005, what="the late item")
        assert released == ["early", "late"] and len(queue) == 0
    finally:
        runner.cancel()


async def test_retry_queue_fails_its_run_when_release_fails() -> None:
    """An error in `release` ends `run` with that error (its owner sees it), unlike a loop timer callback."""

    def release(item: str) -> None:
        raise ValueError(item)

    queue: RetryQueue[str] = RetryQueue(release)
    runner = asyncio.create_task(queue.run())
    queue.put(0.0, "boom")
    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(runner, timeout=2)
