"""The rebalance-listener base: a failing callback ends the worker instead of vanishing.

aiokafka calls `on_partitions_revoked` / `on_partitions_assigned` inside its
coordinator and only logs what they raise, then carries on with the new
assignment: a failed restore would leave a worker consuming without its state.
Subclasses implement `revoked` and `assigned`; any exception is reported to the
supervisor (`fail`), which ends the worker's run so it restarts from Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Set

import structlog
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

log = structlog.get_logger("rebalance")
Fail = Callable[[BaseException], None]


class RebalanceListener(ConsumerRebalanceListener):
    def __init__(self, fail: Fail) -> None:
        self._fail = fail

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Partitions are about to leave this worker: finish (commit) what is in flight for them."""

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Partitions arrived: restore their state before their records are consumed."""

    async def on_partitions_revoked(self, revoked: Set[TopicPartition]) -> None:
        try:
            await self.revoked(set(revoked))
        except Exception as exc:
            log.error("rebalance.revoke_failed", error=type(exc).__name__)
            self._fail(exc)
            raise

    async def on_partitions_assigned(self, assigned: Set[TopicPartition]) -> None:
        try:
            await self.assigned(set(assigned))
        except Exception as exc:
            log.error("rebalance.assign_failed", error=type(exc).__name__)
            self._fail(exc)
            raise
