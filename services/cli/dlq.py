"""The shell of `dlq list` / `dlq replay`: read the DLQ and the replay log, re-drive in transactions.

Each re-driven record and its replay-log entry are written in one Kafka
transaction (fixed transactional id per namespace: two concurrent replays fence
each other), so after a crash a dead letter is either replayed and logged, or
neither, and a later run skips everything in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.replay import DLQ_REPLAYED, replay_key
from schemas.topics import DLQ_INTAKE, MAX_RECORD_BYTES, scoped
from services.cli.deadletters import DeadLetter, Filters, dead_letter, matches, redriven_headers
from services.common.admin import ensure_topics

Progress = Callable[[int], None]
BATCH = 200


async def read_to_end(bootstrap: str, topic: str) -> list[tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Every committed record of `topic` up to its end offsets at call time: (partition, offset, key, value, headers)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed",
                                max_partition_fetch_bytes=MAX_RECORD_BYTES + 65536)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out = []
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                out += [(tp.partition, r.offset, r.key, r.value, list(r.headers)) for r in records if r.offset < end[tp]]
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
        return out
    finally:
        await consumer.stop()


async def replayed_keys(bootstrap: str, namespace: str) -> set[bytes]:
    log = scoped(DLQ_REPLAYED, namespace)
    await ensure_topics(bootstrap, [log])
    return {key for _, _, key, _, _ in await read_to_end(bootstrap, log.name) if key is not None}


async def dead_letters(bootstrap: str, namespace: str, filters: Filters) -> tuple[str, list[DeadLetter], set[bytes]]:
    """The matching dead letters, with the replay log to tell which were already re-driven."""
    dlq = scoped(DLQ_INTAKE, namespace).name
    done = await replayed_keys(bootstrap, namespace)
    letters = [dead_letter(p, o, k, v, h) for p, o, k, v, h in await read_to_end(bootstrap, dlq)]
    return dlq, [d for d in letters if matches(d, filters)], done


async def replay(bootstrap: str, namespace: str, letters: Iterable[DeadLetter], dlq_topic: str, done: set[bytes],
                 set_headers: dict[str, str], progress: Progress = lambda n: None) -> list[DeadLetter]:
    """Re-drive every letter not yet in the replay log into its original raw topic; returns those re-driven."""
    todo = [d for d in letters if replay_key(dlq_topic, d.partition, d.offset) not in done]
    if not todo:
        return []
    log_topic = scoped(DLQ_REPLAYED, namespace).name
    tx_id = f"{namespace}.commune-bus.dlq-replay" if namespace else "commune-bus.dlq-replay"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tx_id, enable_idempotence=True,
                                max_request_size=MAX_RECORD_BYTES + 65536, client_id="commune-bus-dlq-replay")
    await producer.start()
    try:
        for start in range(0, len(todo), BATCH):
            chunk = todo[start:start + BATCH]
            async with producer.transaction():
                for d in chunk:
                    await producer.send(d.context.source_topic, d.value, key=d.key, headers=redriven_headers(d, set_headers))
                    await producer.send(log_topic, d.context.source_topic.encode(),
                                        key=replay_key(dlq_topic, d.partition, d.offset))
            progress(len(chunk))
    finally:
        await producer.stop()
    return todo
