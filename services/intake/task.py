"""The worker's transactions: one transactional producer, one transaction in flight, group commit (ADR 0017).

Every raw partition the worker owns feeds the same transaction stream: records
are validated into the open outputs while the previous transaction commits, and
go out together in the next one with their input offsets. The offsets carry the
consumer group's generation (KIP-447, `services.common.kip447`), so a worker
that lost its partitions (paused past its session timeout, evicted) cannot
commit them: the group coordinator refuses, the transaction aborts. The
transactional id names the worker (`IntakeSettings.transactional_id`): a
restarted worker's producer aborts whatever its predecessor left open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.common import kip447
from services.common.closing import retrieved
from services.intake.outputs import TransactionOutputs

log = structlog.get_logger("intake")
Publish = Callable[["Task", TransactionOutputs], Coroutine[Any, Any, None]]


class TransactionStuck(KafkaError):
    """A transaction did not finish in time (a fenced producer can leave aiokafka waiting for ever)."""


RESUMED_GRACE_S = 1.0
"""What a transaction past its time is still given from when that is first seen: the process may have stood still
(SIGSTOP, a stalled VM, a long GC pause) with the answer on its way or already in the socket. Without it, a process
that woke past its transaction's time called the transaction stuck before reading its answer, a committed one too
(`TransactionStuck`), and ended its run for that: the revoke's drain of a worker paused past its session timeout did
so at once (the chaos matrix's intake-sigstop row, 2026-12-05). A refused answer is given up as any refusal is."""
LATE_WAKE_S = 0.1
"""A wait that ends this much after its time: the process stood still meanwhile (a drain's grace, `Task.drain`)."""


class Task:
    """The worker's producer, where validation stands per raw partition, what waits and what commits."""

    def __init__(self, name: str, producer: AIOKafkaProducer) -> None:
        self.name = name
        self.producer = producer
        self.positions: dict[TopicPartition, int] = {}
        """The next offset to validate per owned raw partition; a fetched record below it was fetched before the
        partition was (re)assigned and is skipped (the consumer delivers it again from the committed offset)."""
        self.open: TransactionOutputs | None = None
        """Validated, waiting for the next transaction."""
        self.inflight: asyncio.Task[None] | None = None
        """The transaction being committed; owned here: awaited by `collect` or `drain`, or cancelled by `cancel`."""
        self.started = 0.0
        """When the transaction in flight started (monotonic seconds)."""
        self.overdue_at: float | None = None
        """When the transaction in flight was first seen past its time (`RESUMED_GRACE_S` runs from then)."""
        self.failed: BaseException | None = None
        """The first failure after which the producer cannot go on: fenced by a newer epoch (a timed-out transaction
        bumps it) or in aiokafka's fatal state, where beginning another transaction is an AssertionError. No
        transaction starts after it; the run ends (and restarts with a new producer)."""

    def __repr__(self) -> str:
        return f"Task({self.name})"

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
            if self.left_s(timeout_s) <= 0:
                raise TransactionStuck(f"{self.name}: a transaction in flight for over {timeout_s:g} s")
            return
        finished, self.inflight = self.inflight, None
        if not finished.cancelled() and (failure := finished.exception()) is not None:
            if not isinstance(failure, kip447.GroupFenced):  # aborted, refused by the group: the producer goes on
                self.failed = failure
            raise failure

    def check(self) -> None:
        """Raise the failure that ended this task's transactions, if one did (whoever collected it first)."""
        if self.failed is not None:
            raise self.failed

    async def wait_inflight(self, timeout_s: float) -> None:
        """Wait until the transaction in flight finishes, or until it has been in flight `timeout_s` (then the next
        `start` or `collect` raises `TransactionStuck`): with the broker gone it may never finish."""
        if (inflight := self.inflight) is not None:
            await asyncio.wait({inflight}, timeout=max(0.0, self.left_s(timeout_s)))

    def left_s(self, timeout_s: float) -> float:
        """How much longer the transaction in flight may take: what is left of `timeout_s` from its start, or once that
        is gone, what is left of `RESUMED_GRACE_S` from when that was first seen."""
        now = time.monotonic()
        if (left := self.started + timeout_s - now) > 0:
            return left
        if self.overdue_at is None:
            self.overdue_at = now
        return self.overdue_at + RESUMED_GRACE_S - now

    def start(self, publish: Publish, timeout_s: float) -> bool:
        """Start the next transaction with everything validated, unless one is committing or nothing waits."""
        self.check()
        self.collect(timeout_s)
        if self.committing or self.open is None:
            return False
        out, self.open = self.open, None
        self.started, self.overdue_at = time.monotonic(), None
        self.inflight = asyncio.create_task(publish(self, out), name=f"intake:transaction:{self.name}")
        # its failure is raised by `collect`; one the run ends without (its own failure ended it) is not logged by
        # asyncio as never retrieved
        self.inflight.add_done_callback(retrieved)
        return True

    async def drain(self, publish: Publish, timeout_s: float) -> None:
        """Commit everything validated so far (before partitions are given up, and on stop); raises a failure, or
        `TransactionStuck` after `timeout_s` (`RESUMED_GRACE_S` more, once, when the process stood still past it)."""
        deadline, graced = time.monotonic() + timeout_s, False
        while self.inflight is not None or self.open is not None:
            if (inflight := self.inflight) is not None:  # the main loop may collect it meanwhile
                # a transaction in flight since before the drain gets what is left of its own time, not a fresh one
                # (with `RESUMED_GRACE_S` if that is gone: the process may have stood still past it)
                now = time.monotonic()
                left = max(0.0, min(deadline - now, self.left_s(timeout_s)))
                await asyncio.wait({inflight}, timeout=left)
                if not inflight.done():
                    if not graced and time.monotonic() - (now + left) > LATE_WAKE_S:
                        # woken late: the process stood still past the drain's time, and the answer may be waiting
                        # unread (audit: given up at once, a restart); `RESUMED_GRACE_S` more, once
                        graced, deadline = True, time.monotonic() + RESUMED_GRACE_S
                        continue
                    raise TransactionStuck(f"{self.name}: not committed within {timeout_s:g} s")
            self.start(publish, timeout_s)

    def cancel(self) -> None:
        """When the run fails or a drain is given up: what was validated is dropped (its offsets were not committed,
        so it is consumed again; an open transaction is aborted by the broker or by the next producer of the id)."""
        if self.committing:
            assert self.inflight is not None
            self.inflight.cancel()
        self.open = None

    async def close(self) -> None:
        """Cancel what is in flight and stop the producer (the caller bounds it: `closing.close_within`, which lets a
        stop it gives up on run to its end instead of cancelling it half-way)."""
        self.cancel()
        try:
            await self.producer.stop()
        finally:  # a cancelled transaction's abort waits for an answer a stopped producer never asks for: for ever
            if self.inflight is not None:  # unless cancelled again (as `closing.stop_writer`; audit)
                self.inflight.cancel()
