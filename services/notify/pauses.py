"""Why a notify consumer's partitions are paused, kept together so that ending one reason never lifts the other.

Two reasons pause partitions: the backlog (all of a consumer's partitions, or the urgent consumer's replay
partitions alone, until the senders catch up: `Records.consume`) and a ledger catch-up (the partitions just
assigned, until the ledger shows what their previous owner sent: `rebalance.Listener`). A partition is fetched only
when neither holds. Kept apart, each undid the other: the throttle's resume lifted a catch-up's pause (records
before the ledger: duplicates), and the catch-up's resume lifted the throttle on new partitions, whose flag still
said "paused" (the backlog then grew without bound).
"""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol

from aiokafka import TopicPartition


class Pausable(Protocol):
    def assignment(self) -> Set[TopicPartition]: ...
    def paused(self) -> Set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...


class Pauses:
    def __init__(self, consumer: Pausable) -> None:
        self.consumer = consumer
        self.throttled = False
        self.throttled_topics: set[str] = set()
        """Topics paused for the backlog beside the whole consumer's throttle (the urgent consumer's replays)."""
        self.holding: set[TopicPartition] = set()

    def hold(self, partitions: set[TopicPartition]) -> None:
        """A ledger catch-up starts for `partitions`."""
        self.holding |= partitions
        self.apply()

    def release(self, partitions: set[TopicPartition]) -> None:
        """Their catch-up is done."""
        self.holding -= partitions
        self.apply()

    def throttle(self, on: bool, topic: str | None = None) -> None:
        """Every partition paused for the backlog (or no longer); with `topic`, that topic's partitions only."""
        if topic is None:
            self.throttled = on
        elif on:
            self.throttled_topics.add(topic)
        else:
            self.throttled_topics.discard(topic)
        self.apply()

    def apply(self) -> None:
        """Pause what some reason holds, resume the rest of the assignment (each only if it is not so already)."""
        assigned = self.consumer.assignment()
        throttled = {tp for tp in assigned if self.throttled or tp.topic in self.throttled_topics}
        wanted = throttled | (self.holding & assigned)
        paused = self.consumer.paused()
        if pause := wanted - paused:
            self.consumer.pause(*pause)
        if resume := (assigned - wanted) & paused:
            self.consumer.resume(*resume)
