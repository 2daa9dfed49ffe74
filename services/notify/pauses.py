"""Why a notify consumer's partitions are paused, kept together so that ending one reason never lifts the other.

Two reasons pause partitions: the routine backlog (all of the routine consumer's partitions, until the senders
catch up: `Records.consume`) and a ledger catch-up (the partitions just assigned, until the ledger shows what
their previous owner sent: `rebalance.Listener`). A partition is fetched only when neither holds. Kept apart,
each undid the other: the throttle's resume lifted a catch-up's pause (records before the ledger: duplicates),
and the catch-up's resume lifted the throttle on new partitions, whose flag still said "paused" (the backlog then
grew without bound).
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
        self.holding: set[TopicPartition] = set()

    def hold(self, partitions: set[TopicPartition]) -> None:
        """A ledger catch-up starts for `partitions`."""
        self.holding |= partitions
        self.apply()

    def release(self, partitions: set[TopicPartition]) -> None:
        """Their catch-up is done."""
        self.holding -= partitions
        self.apply()

    def throttle(self, on: bool) -> None:
        self.throttled = on
        self.apply()

    def apply(self) -> None:
        """Pause what some reason holds, resume the rest of the assignment (each only if it is not so already)."""
        assigned = self.consumer.assignment()
        wanted = set(assigned) if self.throttled else self.holding & assigned
        paused = self.consumer.paused()
        if pause := wanted - paused:
            self.consumer.pause(*pause)
        if resume := (assigned - wanted) & paused:
            self.consumer.resume(*resume)
