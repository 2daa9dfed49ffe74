"""Reading changelog partitions to their end: the one restore loop of every stateful service.

A restore reads committed records only (`read_committed`), from the beginning of
each requested partition up to the end offset it had when the restore began, and
hands each record to `apply`. That end is the partition's high watermark, not its
last stable offset: a transaction committed just before the restore may not have
its markers written yet (`SETTLE_S`). Records written after that point are left to
the service's own consumption. A failure raises: a restore is never half-done silently.
Nor does a restore wait for ever on a broker that went away (aiokafka's reader
retries for as long as it is not stopped): a restore that reads nothing for `stall_s`
(`RESTORE_STALL_S` unless its caller says) raises `RestoreStalled`, a Kafka error (the run
restarts; a command says it in one line).
Applying a fetched chunk (up to `max_records`) gives the event loop back every `YIELD_EVERY_S`:
a restore of a few hundred thousand states must not stop heartbeats, the stall watch
(`services.common.stall`) or `/healthz` for the seconds a whole chunk takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.common import clients, closing
from services.common.settings import KafkaConnection

Apply = Callable[[int, ConsumerRecord[bytes, bytes]], None]
"""Called with (partition, record) for every record below the end offset, in offset order per partition."""


YIELD_EVERY_S = 0.02
"""How long a restore applies records before it lets the other tasks of the loop run."""


RESTORE_STALL_S = 60.0
"""How long a restore may read nothing before it is given up. Every reader to the end has it unless its caller says:
those without one (the CLI's dead-letter, replay-log and trace reads, erasure's and rewrap's key reads, notify's
deadline store) waited for as long as a broker frozen mid-read stayed frozen (audit of the CLI's hangs)."""


SETTLE_S = 2.0
"""How long a restore that has read every committed record waits for a transaction that was open on the partition
when it began. A producer's commit returns once the coordinator has logged it, before the markers are written to the
partitions, so a restore that stopped at the last stable offset could miss what a transaction committed just before:
the previous owner's last ids or states (CI 2026-12-05, the same race in a test: a key store read 57 of 61 key
records, `tests/kafkatools.transactions_settled`). Markers take milliseconds. A transaction still open after this
(a producer killed mid-transaction, which the broker aborts after its transaction timeout) is not waited for, and
with it what other producers committed after it on the partition: a reader cannot pass an open transaction. Reads that
must not leave those out (erasure, rewrap) wait for the whole end (`settle_s=None`)."""


class RestoreStalled(KafkaError):
    """A restore read nothing for longer than its `stall_s` (the broker gone or unreachable)."""


async def read_to_end(conn: KafkaConnection, topic: str, partitions: Iterable[int], apply: Apply, *,
                      client_id: str, max_records: int = 10_000, ends: dict[int, int] | None = None,
                      stall_s: float | None = RESTORE_STALL_S, since_ms: int | None = None,
                      settle_s: float | None = SETTLE_S) -> int:
    """Apply every committed record of `topic`'s `partitions` below their current end; returns how many. `ends`, if
    given, receives where each partition's restore ended. Raises `RestoreStalled` once the restore went `stall_s`
    without moving on (however long the whole restore takes; None: no limit; at least `settle_s` and a second more).
    With `since_ms`, each partition is read from its first record timestamped at or after it (Kafka's time index),
    not from its start. `settle_s`: how long a transaction open at the end is waited for (`SETTLE_S`; None: until
    it ends, within `stall_s`)."""
    numbers = sorted(set(partitions))
    if not numbers:
        return 0
    reader = clients.consumer(conn, client_id=client_id, max_partition_fetch_bytes=8 * 1024 * 1024)
    tps = [TopicPartition(topic, p) for p in numbers]
    if stall_s is not None and settle_s is not None:
        stall_s = max(stall_s, settle_s + 1.0)  # the settle is checked after a fetch wait (0.5 s)
    try:
        async with stall_limit(stall_s, f"restore of {topic}") as progressed:
            await reader.start()
            end, start = await bounds(conn, tps, client_id, since_ms)
            return await _read(reader, tps, end, start, apply, max_records, ends, progressed, settle_s)
    finally:
        await closing.close_within(client_id, "changelog reader", reader.stop)


async def bounds(conn: KafkaConnection, tps: list[TopicPartition], client_id: str,
                 since_ms: int | None) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int] | None]:
    """Each partition's high watermark (its end, records of open transactions included: a read_committed reader's
    `end_offsets` gives the last stable offset), and with `since_ms` where to begin (`time_offsets`, also past the
    last stable offset: a read_committed reader's time index stops there)."""
    reader = clients.consumer(conn, client_id=client_id, isolation_level="read_uncommitted")
    try:
        await reader.start()
        end = await reader.end_offsets(tps)
        return end, None if since_ms is None else await time_offsets(reader, tps, since_ms, end)
    finally:
        await closing.close_within(client_id, "high watermark reader", reader.stop)


class Watermarks:
    """A read_uncommitted client for partitions' high watermarks, started by the first ask (under a lock: concurrent
    asks start one), closed if that start fails; asked after `stop`, it raises KafkaError."""

    def __init__(self, conn: KafkaConnection, client_id: str) -> None:
        self._conn, self._client_id = conn, client_id
        self._reader: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._stopped = False

    async def of(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        async with self._lock:
            if self._stopped:
                raise KafkaError("stopped")
            if self._reader is None:
                reader = clients.consumer(self._conn, client_id=self._client_id, isolation_level="read_uncommitted")
                try:
                    await reader.start()
                except BaseException:
                    await closing.close_within(self._client_id, "high watermark reader", reader.stop)
                    raise
                self._reader = reader
            reader = self._reader
        return await reader.end_offsets(tps)

    async def stop(self) -> None:
        async with self._lock:  # no start after this stop
            reader, self._reader, self._stopped = self._reader, None, True
        if reader is not None:
            await closing.close_within(self._client_id, "high watermark reader", reader.stop)


@asynccontextmanager
async def stall_limit(stall_s: float | None, what: str) -> AsyncIterator[Callable[[], None]]:
    """A restore's stall limit: the body calls the callable it is given whenever the restore moved on; raises
    `RestoreStalled` naming `what` once the body went `stall_s` without (None: no limit)."""
    try:
        async with asyncio.timeout(stall_s) as deadline:
            def progressed() -> None:
                if stall_s is not None:
                    deadline.reschedule(asyncio.get_running_loop().time() + stall_s)

            yield progressed
    except TimeoutError:
        if stall_s is None or not deadline.expired():
            raise
        raise RestoreStalled(f"{what}: nothing read for {stall_s:g} s") from None


async def _read(reader: AIOKafkaConsumer, tps: list[TopicPartition], end: dict[TopicPartition, int],
                start: dict[TopicPartition, int] | None, apply: Apply, max_records: int, ends: dict[int, int] | None,
                progressed: Callable[[], None], settle_s: float | None) -> int:
    """Apply the committed records below `end` (the high watermarks), from `start` or the beginning; a partition whose
    reader stands at its last stable offset below it ends there once `_settled` (`ends`, if given, receives where
    each partition ended)."""
    applied = 0
    reader.assign(tps)
    if start is None:
        await reader.seek_to_beginning(*tps)
    else:
        for tp in tps:
            reader.seek(tp, start[tp])
    positions = {tp: await reader.position(tp) for tp in tps}
    pending = {tp for tp in tps if positions[tp] < end[tp]}  # empty, or emptied by retention
    reached = {tp: positions[tp] for tp in tps if tp not in pending}
    """Per partition done, the offset below which every committed record was applied: where the reader stood, or the
    first record at or past the end, left out."""
    moved_at = dict.fromkeys(tps, time.monotonic())
    yielded = time.perf_counter()
    while pending:
        chunk = await reader.getmany(*pending, timeout_ms=500, max_records=max_records)
        past: dict[TopicPartition, int] = {}
        for tp, records in chunk.items():
            for rec in records:
                if rec.offset >= end[tp]:  # the service's own consumption
                    past[tp] = rec.offset
                    break
                apply(tp.partition, rec)
                applied += 1
                if time.perf_counter() - yielded >= YIELD_EVERY_S:
                    await asyncio.sleep(0)
                    yielded = time.perf_counter()
        # progress is the position moving, records or not: a stretch of aborted records and transaction markers
        # (left by runs that ended mid-transaction) returns nothing and moves it all the same
        moved = {tp: await reader.position(tp) for tp in pending}
        if chunk or any(moved[tp] > positions[tp] for tp in pending):
            progressed()
        for tp in pending:
            if moved[tp] > positions[tp]:
                moved_at[tp] = time.monotonic()
        positions.update(moved)
        done = {tp for tp in pending
                if tp in past or moved[tp] >= end[tp] or _settled(reader, tp, moved[tp], moved_at[tp], settle_s)}
        reached.update({tp: past.get(tp, moved[tp]) for tp in done})
        pending -= done
    if ends is not None:
        ends.update({tp.partition: offset for tp, offset in reached.items()})
    return applied


def _settled(reader: AIOKafkaConsumer, tp: TopicPartition, position: int, moved_at: float,
             settle_s: float | None) -> bool:
    """Whether the reader stands at the partition's last stable offset as a fetch answered `settle_s` after the
    position last moved (`moved_at`, monotonic seconds): a transaction open there that long is given up on. An older
    answer may predate markers written since (a fetch held up by a leader change). aiokafka stamps an answer with the
    wall clock, so the move is put on the wall clock as it reads now: a step of it (NTP) between the move and the
    answer neither gave the transaction up at once (ahead) nor waited the step out (back; clock audit)."""
    if settle_s is None:
        return False
    lso, polled = reader.last_stable_offset(tp), reader.last_poll_timestamp(tp)  # polled: epoch ms, as aiokafka's
    moved_wall = moved_at + time.time() - time.monotonic()
    return lso is not None and polled is not None and position >= lso and polled >= (moved_wall + settle_s) * 1000


async def time_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int,
                       end: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Each partition's first record timestamped at or after `since_ms` (Kafka's time index), or its `end` when none
    is that late."""
    found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
    return {tp: end[tp] if (at := found.get(tp)) is None else at.offset for tp in tps}


async def end_offsets(conn: KafkaConnection, topic: str, partitions: Iterable[int], *,
                      client_id: str) -> dict[int, int]:
    """The current end offset (committed records) of each of `topic`'s `partitions`."""
    tps = [TopicPartition(topic, p) for p in sorted(set(partitions))]
    if not tps:
        return {}
    reader = clients.consumer(conn, client_id=client_id)
    await reader.start()
    try:
        return {tp.partition: offset for tp, offset in (await reader.end_offsets(tps)).items()}
    finally:
        await reader.stop()
