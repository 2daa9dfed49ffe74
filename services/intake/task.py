"""One task of an intake worker: raw partition number N of every raw topic, committed by a producer of its own.

Why one transactional producer per raw partition number (ADR 0011): aiokafka
commits a transaction's offsets without the consumer group's generation (no
KIP-447), so the broker cannot tell a worker that lost its partitions (paused
past the session timeout, stalled) from their new owner, and the old owner's
late commit would publish records its successor publishes again. With the
transactional id `<namespace.>commune-bus.intake.p<N>`, the same on every
worker, whoever is assigned N starts that producer first, which aborts the
earlier owner's open transaction (or waits for its commit to finish) and makes
any later transaction of the earlier owner fail with ProducerFenced. Only then
does the new owner read N's committed offsets and de-duplication state, so it
starts exactly where the last committed transaction of N ended: Kafka Streams'
"exactly-once v1".

A task commits its own outputs with its own input offsets, one transaction in
flight at a time; everything validated meanwhile goes out in the next one
(group commit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.intake.outputs import TransactionOutputs

log = structlog.get_logger("intake")
Publish = Callable[["Task", TransactionOutputs], Coroutine[Any, Any, None]]


class TransactionStuck(KafkaError):
    """A transaction did not finish in time (a fenced producer can leave aiokafka waiting for ever)."""


class Task:
    """Raw partition N of every raw topic: its producer, where validation stands, what waits and what commits."""

    def __init__(self, number: int, producer: AIOKafkaProducer) -> None:
        self.number = number
        self.producer = producer
        self.positions: dict[TopicPartition, int] = {}
        """The next offset to validate per raw partition; a fetched record below it was fetched before the task
        (re)started and is skipped (the consumer delivers it again from the committed offset)."""
        self.open: TransactionOutputs | None = None
        """Validated, waiting for the next transaction."""
        self.inflight: asyncio.Task[None] | None = None
        """The transaction being committed; owned here: awaited by `collect` or `drain`, or cancelled by `cancel`."""
        self.started = 0.0
        """When the transaction in flight started (monotonic seconds)."""

    def __repr__(self) -> str:
        return f"Task(p{self.number})"

    @property
    def committing(self) -> bool:
        return self.inflight is not None and not self.inflight.done()

    def outputs(self, partitions: dict[str, int]) -> TransactionOutputs:
        if self.open is None:
            self.open = TransactionOutputs(self.producer, partitions)
        return self.open

    def collect(self, timeout_s: float) -> None:
        """Forget the transaction that finished; raise its failure if it failed, or if it takes over `timeout_s`."""
        if self.inflight is None:
            return
        if not self.inflight.done():
            if time.monotonic() - self.started > timeout_s:
                raise TransactionStuck(f"task p{self.number}: a transaction in flight for over {timeout_s:g} s")
            return
        finished, self.inflight = self.inflight, None
        finished.result()

    def start(self, publish: Publish, timeout_s: float) -> bool:
        """Start the next transaction with everything validated, unless one is committing or nothing waits."""
        self.collect(timeout_s)
        if self.committing or self.open is None:
            return False
        out, self.open = self.open, None
        self.started = time.monotonic()
        self.inflight = asyncio.create_task(publish(self, out), name=f"intake:transaction:p{self.number}")
        return True

    async def drain(self, publish: Publish, timeout_s: float) -> None:
        """Commit everything validated so far (before the task is given up, and on stop); raises a failure, or
        `TransactionStuck` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.inflight is not None or self.open is not None:
            if (inflight := self.inflight) is not None:  # the main loop may collect it meanwhile
                await asyncio.wait({inflight}, timeout=max(0.0, deadline - time.monotonic()))
                if not inflight.done():
                    raise TransactionStuck(f"task p{self.number}: not committed within {timeout_s:g} s")
            self.start(publish, timeout_s)

    def cancel(self) -> None:
        """Only when the run fails: the open transaction is aborted by the broker or fenced by the next owner."""
        if self.committing:
            assert self.inflight is not None
            self.inflight.cancel()
        self.open = None

    async def close(self) -> None:
        self.cancel()
        try:
            await asyncio.wait_for(self.producer.stop(), timeout=10)
        except (TimeoutError, KafkaError) as exc:  # a fenced producer, or the broker being the reason we stop
            log.warning("intake.producer_stop_failed", task=self.number, error=type(exc).__name__)
