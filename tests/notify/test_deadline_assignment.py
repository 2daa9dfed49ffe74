"""The tracker's assignment bookkeeping: restores taken only when current, stale partitions restored again, nothing
written while the group may have moved on."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.common.aiokafka_compat import HEARD_AT
from services.notify.deadline_assignment import Assignment, Unanswered, answered, answered_again

pytestmark = pytest.mark.unit


def test_a_restore_overtaken_by_later_assignments_is_redone_for_partitions_owned_elsewhere_meanwhile() -> None:
    """Partition 0 went to another worker while ours was restoring, then came back: it is restored again."""
    a = Assignment(partitions=6)
    a.assigned({0, 1, 2})
    first = a.pending()
    assert first is not None and first.wanted == {0, 1, 2}
    a.revoked()
    a.assigned({1, 2, 3})  # 0 owned by another worker in this generation
    a.revoked()
    a.assigned({0, 1, 2})  # back, with whatever the other worker wrote meanwhile
    assert not a.taken(first) and a.owned == set()
    again = a.pending()
    assert again is not None and again.wanted == {0, 1, 2} and 0 in again.stale and 3 in again.stale
    assert a.taken(again) and a.owned == {0, 1, 2} and a.pending() is None


def test_nothing_is_owned_while_rebalancing_and_an_unchanged_assignment_needs_no_restore() -> None:
    """A revocation empties what is ticked; the same partitions again cost no restore once none was left out."""
    a = Assignment(partitions=6)
    a.assigned(set(range(6)))
    todo = a.pending()
    assert todo is not None and todo.stale == set() and a.taken(todo)
    a.revoked()
    assert a.owned == set() and a.pending() is None
    a.assigned(set(range(6)))
    same = a.pending()
    assert same is not None and same.stale == set() and a.taken(same) and a.pending() is None


class _Coordinator:
    pass


class _Consumer:
    """What `answered` reads of a consumer: its coordinator's `heard_at` attribute (`aiokafka_compat`)."""

    def __init__(self, heard: float | None) -> None:
        self._coordinator = _Coordinator()
        if heard is not None:
            setattr(self._coordinator, HEARD_AT, heard)

    def heard(self) -> None:
        setattr(self._coordinator, HEARD_AT, time.monotonic())


def test_a_batch_is_written_only_once_the_group_answers_and_dropped_if_the_assignment_moved() -> None:
    batch = {"tp": ["record"]}

    async def scenario(change: bool, stop_instead: bool) -> object:
        a = Assignment(6)
        a.assigned({0, 1})
        consumer, stop = _Consumer(time.monotonic() - 60), asyncio.Event()  # last answered a minute ago

        async def group() -> None:  # the heartbeat's answer, after a rejoin or not
            await asyncio.sleep(0.3)
            if stop_instead:
                stop.set()
                return
            if change:
                a.revoked()
                a.assigned({2})
            consumer.heard()

        told = asyncio.create_task(group())
        got = await answered_again(consumer, a, 5.0, stop, batch)
        assert told.done(), "returned before the group answered"
        return got

    assert asyncio.run(scenario(change=False, stop_instead=False)) is batch  # a broker back: the same member
    assert asyncio.run(scenario(change=True, stop_instead=False)) is None  # evicted: positions went back
    assert asyncio.run(scenario(change=False, stop_instead=True)) is None  # stopped while unanswered: nothing written
    fresh = _Consumer(time.monotonic())
    assert asyncio.run(answered_again(fresh, Assignment(6), 5.0, asyncio.Event(), batch)) is batch
    assert answered(_Consumer(None), 5.0)  # not tracked: as before


def test_a_wait_the_group_never_answers_ends_the_run_before_the_consumer_would_leave_its_group() -> None:
    """The wait does not poll: past aiokafka's max_poll_interval the consumer leaves its group and never joins again
    until it polls, so a wait without a bound lasted for ever after a long outage (review). `Unanswered` ends the
    run instead (a Kafka error: the runtime restarts it with a fresh consumer)."""
    a = Assignment(6)
    a.assigned({0})
    with pytest.raises(Unanswered):
        asyncio.run(answered_again(_Consumer(time.monotonic() - 60), a, 5.0, asyncio.Event(), {}, give_up_s=0.3))
