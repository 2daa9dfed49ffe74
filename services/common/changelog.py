"""Reading changelog partitions to their end: the one restore loop of every stateful service.

A restore reads committed records only (`read_committed`), from the beginning of
each requested partition up to the end offset it had when the restore began, and
hands each record to `apply`. Records written after that point are left to the
service's own consumption. A failure raises: a restore is never half-done silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiokafka import ConsumerRecord, TopicPartition

from services.common import clients
from services.common.settings import KafkaConnection

Apply = Callable[[int, ConsumerRecord[bytes, bytes]], None]
"""Called with (partition, record) for every record below the end offset, in offset order per partition."""


async def read_to_end(conn: KafkaConnection, topic: str, partitions: Iterable[int], apply: Apply, *,
                      client_id: str, max_records: int = 10_000, ends: dict[int, int] | None = None) -> int:
    """Apply every committed record of `topic`'s `partitions` below their current end; returns how many. `ends`, if
    given, receives each partition's end offset the restore read up to."""
    numbers = sorted(set(partitions))
    if not numbers:
        return 0
    reader = clients.consumer(conn, client_id=client_id, max_partition_fetch_bytes=8 * 1024 * 1024)
    await reader.start()
    applied = 0
    try:
        tps = [TopicPartition(topic, p) for p in numbers]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        if ends is not None:
            ends.update({tp.partition: offset for tp, offset in end.items()})
        pending = {tp for tp in tps if await reader.position(tp) < end[tp]}  # empty, or emptied by retention
        while pending:
            chunk = await reader.getmany(*pending, timeout_ms=500, max_records=max_records)
            for tp, records in chunk.items():
                for rec in records:
                    if rec.offset < end[tp]:
                        apply(tp.partition, rec)
                        applied += 1
            pending = {tp for tp in pending if await reader.position(tp) < end[tp]}
    finally:
        await reader.stop()
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
