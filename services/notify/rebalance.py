"""Partition moves of notify's two consumers: commit before partitions leave, catch up with the ledger after.

The worker is ready once both consumers have their assignment and the ledger has
caught up; it is not ready while either is rebalancing. A failed catch-up raises
(the runtime's listener base ends the run); a refused commit is logged and
counted by `commit` and the records it covered are redone by the next owner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiokafka import TopicPartition

from services.common.health import Health
from services.common.rebalance import Fail, RebalanceListener


class Readiness:
    """Ready when every named consumer is assigned (after its ledger catch-up)."""

    def __init__(self, health: Health, consumers: Iterable[str]) -> None:
        self.health = health
        self._waiting = set(consumers)

    def assigned(self, consumer: str) -> None:
        self._waiting.discard(consumer)
        if not self._waiting:
            self.health.set_ready(True, "assigned, ledger caught up, consuming")

    def rebalancing(self, consumer: str) -> None:
        self._waiting.add(consumer)
        self.health.set_ready(False, f"{consumer} consumer rebalancing")


class Listener(RebalanceListener):
    def __init__(self, fail: Fail, name: str, readiness: Readiness, *, commit: Callable[[str], Awaitable[None]],
                 forget: Callable[[TopicPartition], None], catch_up: Callable[[], Awaitable[None]]) -> None:
        super().__init__(fail)
        self.name, self.readiness = name, readiness
        self._commit, self._forget, self._catch_up = commit, forget, catch_up

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self.readiness.rebalancing(self.name)
        await self._commit("revoke")
        for tp in partitions:
            self._forget(tp)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        await self._catch_up()  # see what the previous owner sent before redoing its records
        self.readiness.assigned(self.name)
