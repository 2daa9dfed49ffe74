"""The snapshot events of the owned partitions, published through each partition's fenced writer, every interval.

A snapshot publish that meets a Kafka error is logged, counted and retried at the next interval, unless its writer
is fenced or stuck (`ends_run`): that ends the run as a state write's would; or the broker refused a right or a login
(`PERMANENT`, e.g. the snapshot topic's WRITE taken away): that ends the process, as for every other write of its, since
no next interval mends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from aiokafka.errors import KafkaError

from schemas import wire
from schemas.wire import KafkaRecord
from services.common.permanent import PERMANENT
from services.common.transactions import TransactionLost
from services.metrics import telemetry
from services.metrics.aggregate import CommuneTotals
from services.metrics.ownership import Ownership
from services.metrics.snapshots import snapshot
from services.metrics.writers import WriteStuck, is_fenced

log = structlog.get_logger("metrics")


async def publish_snapshots(ownership: Ownership, lock: asyncio.Lock, now: datetime) -> int:
    """One snapshot event per commune of the owned partitions, a transaction per partition; returns how many."""
    async with lock:
        parts = {part.partition: [r for commune, totals in part.communes.items()
                                  if (r := _snapshot_record(commune, totals, now)) is not None]
                 for part in ownership.exported() if part.communes}
        # through each partition's writer: a woken worker's stale snapshots are fenced with its states; every
        # partition's write is waited for (none left running unseen), and its first failure raised
        results = await asyncio.gather(*(ownership.writers[p].write_snapshots(records)
                                         for p, records in parts.items()), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise next((f for f in failures if ends_run(f)), failures[0])
    n = sum(len(records) for records in parts.values())
    telemetry.SNAPSHOTS.inc(n)
    return n


async def snapshot_loop(stop: asyncio.Event, interval_s: float, publish: Callable[[], Awaitable[int]]) -> None:
    """`publish` every interval until `stop`; a Kafka error skips one (counted), a fenced or stuck writer and
    anything else end the run."""
    while not await _stopped_within(stop, interval_s):
        try:
            n = await publish()
            log.info("metrics.snapshots", communes=n)
        except KafkaError as exc:
            telemetry.SNAPSHOT_FAILURES.inc()
            log.warning("metrics.snapshot_failed", error=type(exc).__name__)
            if ends_run(exc) or isinstance(exc, PERMANENT):  # a fenced writer: the partition is another worker's
                raise  # now; a stuck one takes no more; a refused right: before, skipped every interval for good


def _snapshot_record(commune: str, totals: CommuneTotals, now: datetime) -> KafkaRecord | None:
    """One commune's snapshot record; None (logged, counted) if its figures do not make a valid snapshot: one
    commune's bad figures must not stop the others' snapshots, nor (raised from the loop) the worker."""
    try:
        return wire.encode(snapshot(commune, totals, now))
    except Exception as exc:
        telemetry.SNAPSHOT_FAILURES.inc()
        log.error("metrics.snapshot_invalid", commune=commune, error=type(exc).__name__)
        return None


def ends_run(exc: BaseException) -> bool:
    """A write failure that a skipped snapshot must not hide: the writer is fenced (the partition is another
    worker's) or unusable (stuck, or its transaction ended under it); the run restarts, as after a state write."""
    return is_fenced(exc) or isinstance(exc, WriteStuck | TransactionLost)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
