"""Reading changelog partitions to their end: the one restore loop of every stateful service.

A restore reads committed records only (`read_committed`), from the beginning of
each requested partition up to the end offset it had when the restore began, and
hands each record to `apply`. Records written after that point are left to the
service's own consumption. A failure raises: a restore is never half-done silently.
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


class RestoreStalled(KafkaError):
    """A restore read nothing for longer than its `stall_s` (the broker gone or unreachable)."""


async def read_to_end(conn: KafkaConnection, topic: str, partitions: Iterable[int], apply: Apply, *,
                      client_id: str, max_records: int = 10_000, ends: dict[int, int] | None = None,
                      stall_s: float | None = RESTORE_STALL_S, since_ms: int | None = None) -> int:
    """Apply every committed record of `topic`'s `partitions` below their current end; returns how many. `ends`, if
    given, receives each partition's end offset the restore read up to. Raises `RestoreStalled` once the restore went
    `stall_s` without moving on (however long the whole restore takes; None: no limit). With `since_ms`, each
    partition is read from its first record timestamped at or after it (Kafka's time index), not from its start."""
    numbers = sorted(set(partitions))
    if not numbers:
        return 0
    reader = clients.consumer(conn, client_id=client_id, max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        async with stall_limit(stall_s, f"restore of {topic}") as progressed:
            await reader.start()
            return await _read(reader, [TopicPartition(topic, p) for p in numbers], apply, max_records, ends,
                               progressed, since_ms)
    finally:
        await closing.close_within(client_id, "changelog reader", reader.stop)


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


async def _read(reader: AIOKafkaConsumer, tps: list[TopicPartition], apply: Apply, max_records: int,
                ends: dict[int, int] | None, progressed: Callable[[], None], since_ms: int | None) -> int:
    applied = 0
    reader.assign(tps)
    end = await reader.end_offsets(tps)
    if since_ms is None:
        await reader.seek_to_beginning(*tps)
    else:
        found = await reader.offsets_for_times(dict.fromkeys(tps, since_ms))
        for tp in tps:  # no record that late: nothing to read there
            at = found.get(tp)
            reader.seek(tp, end[tp] if at is None else at.offset)
    if ends is not None:
        ends.update({tp.partition: offset for tp, offset in end.items()})
    positions = {tp: await reader.position(tp) for tp in tps}
    pending = {tp for tp in tps if positions[tp] < end[tp]}  # empty, or emptied by retention
    yielded = time.perf_counter()
    while pending:
        chunk = await reader.getmany(*pending, timeout_ms=500, max_records=max_records)
        for tp, records in chunk.items():
            for rec in records:
                if rec.offset < end[tp]:
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
        positions.update(moved)
        pending = {tp for tp in pending if moved[tp] < end[tp]}
    return applied


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
