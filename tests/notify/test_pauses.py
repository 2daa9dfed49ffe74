"""The notify consumers' two reasons to pause partitions, kept together: neither lifts the other's."""

from __future__ import annotations

from collections.abc import Set

import pytest
from aiokafka import TopicPartition

from services.notify.pauses import Pauses

pytestmark = pytest.mark.unit
P0, P1, P2 = (TopicPartition("t", p) for p in range(3))


class Consumer:
    """aiokafka's pause bookkeeping: only assigned partitions can be paused; a revoked one forgets it was."""

    def __init__(self, *assigned: TopicPartition) -> None:
        self.assigned, self._paused = set(assigned), set[TopicPartition]()

    def assign(self, *partitions: TopicPartition) -> None:
        self.assigned = set(partitions)
        self._paused &= self.assigned

    def assignment(self) -> Set[TopicPartition]:
        return frozenset(self.assigned)

    def paused(self) -> Set[TopicPartition]:
        return frozenset(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions) & self.assigned

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)


def test_lifting_the_throttle_leaves_a_catch_up_paused() -> None:
    consumer = Consumer(P0, P1)
    pauses = Pauses(consumer)
    pauses.throttle(True)
    pauses.hold({P1})  # P1 arrives again, its ledger catching up
    pauses.throttle(False)
    assert consumer.paused() == {P1}, "records of P1 before its ledger caught up: duplicates"
    pauses.release({P1})
    assert consumer.paused() == set()


def test_the_throttle_holds_partitions_assigned_while_it_is_on() -> None:
    """A rebalance under the throttle: the new partitions' catch-up ends, and they stay paused by the throttle
    (they were fetched, and the backlog grew without bound)."""
    consumer = Consumer(P0)
    pauses = Pauses(consumer)
    pauses.throttle(True)
    consumer.assign(P1, P2)  # revoked P0, assigned P1, P2 (aiokafka forgets their pause state)
    pauses.hold({P1, P2})
    pauses.release({P1, P2})
    assert consumer.paused() == {P1, P2}
    pauses.throttle(False)
    assert consumer.paused() == set()


def test_apply_follows_a_new_assignment_without_a_hold() -> None:
    consumer = Consumer(P0)
    pauses = Pauses(consumer)
    pauses.throttle(True)
    consumer.assign(P0, P1)
    pauses.apply()
    assert consumer.paused() == {P0, P1}


def test_a_topic_throttle_pauses_that_topic_alone_and_survives_the_whole_throttle_and_a_catch_up() -> None:
    """The urgent consumer's replay partitions pause alone (`Records.replay_throttle`): the announcements are read on;
    lifting the whole consumer's throttle, or a catch-up's end, does not lift it; a partition of that topic assigned
    later follows it."""
    ann, rep, rep1 = TopicPartition("ann", 0), TopicPartition("rep", 0), TopicPartition("rep", 1)
    consumer = Consumer(ann, rep)
    pauses = Pauses(consumer)
    pauses.throttle(True, "rep")
    assert consumer.paused() == {rep}
    pauses.throttle(True)
    pauses.throttle(False)
    pauses.hold({rep})
    pauses.release({rep})
    consumer.assign(ann, rep, rep1)
    pauses.apply()
    assert consumer.paused() == {rep, rep1}
    pauses.throttle(False, "rep")
    assert consumer.paused() == set()
