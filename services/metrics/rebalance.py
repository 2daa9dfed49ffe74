"""The metrics worker's partition moves: commit the batch in flight before partitions leave, restore arriving ones
in a supervised task before they are consumed (`Rebalance`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.rebalance import RebalanceListener
from services.common.runtime import Supervisor

if TYPE_CHECKING:  # for types only: the worker builds its listener from this module
    from services.metrics.worker import MetricsWorker


class Rebalance(RebalanceListener):
    """Commit the batch in flight before partitions leave; restore arriving ones before they are consumed.

    The restore runs as a supervised task, not in the callback: aiokafka sends no heartbeat while
    `on_partitions_assigned` runs, and a restore longer than the session timeout (hundreds of thousands of
    changelog records) had the worker evicted, its first commit refused, the run restarted with a fresh restore,
    evicted again, for ever (runtime audit finding 1). The assigned partitions stay paused until their states are
    restored (nothing of them is fetched); a revocation cancels a restore under way first."""

    def __init__(self, worker: MetricsWorker, supervisor: Supervisor) -> None:
        super().__init__(supervisor.fail)
        assert worker.readiness is not None
        self.worker, self.readiness, self.supervisor = worker, worker.readiness, supervisor

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self.worker.stop_restoring()
        async with self.worker.lock:  # the batch in flight flushes and commits first
            self.readiness.not_owning("rebalancing")
            await self.worker.settle()
            self.worker.ownership.revoke()

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        consumer = self.worker.consumer
        if consumer is None:  # the stop gave the consumer's close up (10 s) and dropped it; its join ended since
            return  # (an assertion here: a clean SIGTERM ended in `service.crashed`; audit)
        consumer.pause(*partitions)  # before any await: nothing of them is fetched until their states are restored
        await self.worker.stop_restoring()
        if self.worker.stopping:  # the consumer's stop completing a join: the run is ending, nothing is restored
            return
        # None once the run's task group is ending (a task failed): nothing is restored, nothing failed
        self.worker.restoring = self.supervisor.spawn_if_running("restore", self._restore(consumer, set(partitions)))

    async def _restore(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        async with self.worker.lock:
            if self.worker.stopping:
                return
            await self.worker.ownership.assign(partitions)
            consumer.resume(*partitions)
            self.readiness.owning(f"{len(self.worker.ownership.owned)} partitions assigned and restored")
