"""Partitions arriving at and leaving an intake worker: its consumer's rebalance listener.

On assignment the new partitions are paused at once and made ready in a supervised task of the worker's own:
their committed offsets read once no transaction holds them open (`require_stable`, KIP-447), their
de-duplication state restored, the consumer sought to them, and only then resumed. On revocation what is validated
and in flight is committed (unless the group refuses it), then the partitions' state is dropped.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from services.common import kip447
from services.common.rebalance import RebalanceListener
from services.intake import telemetry
from services.intake.restore import restore_seen
from services.privacy.intake import key_topic_specs

if TYPE_CHECKING:
    from services.intake.worker import IntakeWorker

log = structlog.get_logger("intake")


class Assignment(RebalanceListener):
    def __init__(self, worker: IntakeWorker) -> None:
        super().__init__(worker.supervisor.fail)
        self.worker = worker
        self.readying: asyncio.Task[None] | None = None
        """Making the last assigned partitions ready (`_ready`), until done or revoked."""

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Pause the new partitions at once, and make them ready in a supervised task of its own.

        Getting ready can wait a while (a predecessor's transaction holding the offsets open, a long restore):
        inside the rebalance callback that wait would stop the consumer's heartbeats, and a callback longer than
        the session timeout gets the member evicted, its first commit refused. So the callback returns at once;
        the partitions stay paused until `_ready` has read their offsets, restored their state and sought.
        """
        w = self.worker
        assert w.consumer is not None
        w.consumer.pause(*partitions)  # before any await: nothing of them is fetched until they are ready
        # None once the run's task group is ending: nothing is made ready, nothing failed (it was counted; audit)
        self.readying = w.supervisor.spawn_if_running("assign", self._ready(set(partitions)))

    async def _ready(self, partitions: set[TopicPartition]) -> None:
        """Read the new partitions' committed offsets once stable, restore their state, seek to them; then ready.

        The waits on the broker are bounded (twice the transaction timeout each, or without a record read for that
        long: a Kafka error, the run restarts) and hold no lock: validation and the final drain never wait on them.
        Nothing validated depends on them meanwhile: the partitions stay paused, and their state is their own.
        """
        w = self.worker
        assert w.consumer is not None and w.task is not None
        wait_s = 2 * w.settings.transaction_timeout_ms / 1000
        numbers = {tp.partition for tp in partitions}
        for n in sorted(numbers):
            if {tp.topic for tp in partitions if tp.partition == n} != set(w.topics.family_of):
                log.warning("intake.partitions_split", partition=n)  # another assignor in the group
        if not w.partitions:  # where records go: re-routed raw, canonical, data keys (batched by partition)
            w.partitions = await self._partition_counts(wait_s)
        # waits while another member's transaction holds offsets of these partitions open (paused, stalled):
        # it commits or the broker aborts it after the transaction timeout; its changelog records likewise
        committed = await kip447.fetch_stable_offsets(w.consumer, partitions, timeout_s=wait_s)
        wanted = {(w.topics.family_of[tp.topic], tp.partition) for tp in partitions}
        await restore_seen(w.settings, w.topics.changelog, w.seen.missing(wanted), w.seen, stall_s=wait_s)
        async with w.lock:
            for tp in sorted(partitions):
                offset = committed.get(tp)
                if offset is not None:
                    w.consumer.seek(tp, offset)
                w.task.positions[tp] = offset or 0
            telemetry.TASKS.set(len({tp.partition for tp in w.task.positions}))
        w.consumer.resume(*partitions)
        w.readiness.owning(f"assigned {len(partitions)} raw partitions, restored")

    async def _partition_counts(self, timeout_s: float) -> dict[str, int]:
        """The real partition counts of the topics records go to, read from metadata within `timeout_s`."""
        w = self.worker
        assert w.task is not None
        counted = [*w.topics.counted, *(t.name for t in key_topic_specs(w.settings.namespace))]
        try:
            async with asyncio.timeout(timeout_s):
                return {t: len(await w.task.producer.partitions_for(t)) for t in counted}
        except TimeoutError:
            raise KafkaTimeoutError(f"no metadata of intake's output topics within {timeout_s:g} s") from None

    async def cancel_readying(self) -> None:
        """Stop making partitions ready (they are leaving, or the run ends): nothing of them was validated yet."""
        if self.readying is not None and not self.readying.done():
            self.readying.cancel()
            await asyncio.wait({self.readying})
        self.readying = None

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit what is validated and in flight (unless the group refuses it), then drop the partitions' state."""
        w = self.worker
        w.readiness.not_owning("partitions revoked")
        await self.cancel_readying()
        async with w.lock:
            assert w.task is not None
            try:  # within the rebalance timeout (the session timeout), or the group moves on without this worker
                await w.drain(w.settings.session_timeout_ms / 1000)
            finally:
                for tp in partitions:
                    w.task.positions.pop(tp, None)
                w.seen.forget(w.topics.raw_partitions(partitions))
                telemetry.TASKS.set(len({tp.partition for tp in w.task.positions}))
