"""Kafka shells of `publish` and `tail`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from schemas.topics import MAX_RECORD_BYTES

Record = tuple[bytes | None, bytes, Sequence[tuple[str, bytes]]]


async def publish(bootstrap: str, topic: str, records: Sequence[Record], progress: Callable[[int], None]) -> int:
    """Send every record (acks=all, idempotent) and wait for all acknowledgements."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
                                max_request_size=MAX_RECORD_BYTES + 65536, client_id="commune-bus-cli")
    await producer.start()
    try:
        futures = []
        for key, value, headers in records:
            futures.append(await producer.send(topic, value, key=key, headers=list(headers)))
        for fut in asyncio.as_completed(futures):
            await fut
            progress(1)
        return len(futures)
    finally:
        await producer.stop()


async def tail(bootstrap: str, topic: str, from_beginning: bool, limit: int | None, idle_s: float | None,
               show: Callable[[ConsumerRecord[bytes, bytes]], None]) -> int:
    """Follow `topic` (read_committed) and `show` each record; stop after `limit` records or `idle_s` quiet seconds."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                isolation_level="read_committed", max_partition_fetch_bytes=MAX_RECORD_BYTES + 65536)
    await consumer.start()
    seen = 0
    loop = asyncio.get_running_loop()
    last = loop.time()
    try:
        while limit is None or seen < limit:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for rec in records:
                    show(rec)
                    seen += 1
                    last = loop.time()
            if idle_s is not None and loop.time() - last > idle_s:
                break
        return seen
    finally:
        await consumer.stop()
