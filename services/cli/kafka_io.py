"""Kafka shells of `publish` and `tail`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError, UnknownTopicOrPartitionError
from aiokafka.structs import RecordMetadata

from services.cli.errors import TopicMissing, TopicNotVisible
from services.common import clients
from services.common.admin import partition_counts, topic_error
from services.common.changelog import time_offsets
from services.common.closing import close_within, start_within, within
from services.common.settings import KafkaConnection

Record = tuple[bytes | None, bytes, Sequence[tuple[str, bytes]]]
CLIENT_ID = "commune-bus-cli"
ACK_STALL_S = 60.0
"""A command writing to Kafka (`publish`, `dlq replay`, `notify-dlq replay`) gives up once no acknowledgement came
for this long while records wait for one: an idempotent producer retries a batch for as long as the broker does not
answer (aiokafka never expires it), so a broker that stopped answering mid-publish held the command, and then its
producer's stop, for ever; a transactional one likewise (a replay was still waiting after 180 s)."""
STOP_TIMEOUT_S = 10.0
"""How long such a command waits for its producer's stop (which waits for the batches still unacknowledged)."""
FIRST_FETCH_S = 30.0
"""`tail --idle` counts its quiet seconds from the first fetch answered for every partition, or from this long after
the start if one never is (a partition without a leader)."""
T = TypeVar("T")


class Unacknowledged(KafkaTimeoutError):
    """No acknowledgement came for `ACK_STALL_S`; the message says what was written, and what may have been."""


async def acknowledged(work: Awaitable[T], written: str) -> T:
    """`work` (a send's acknowledgement, a transaction's end), or `Unacknowledged` once it waited `ACK_STALL_S`,
    saying `written`; `work` is then cancelled and left to end in the background (`closing.within`)."""
    try:
        return await within(work, ACK_STALL_S)
    except TimeoutError:
        raise Unacknowledged(f"no acknowledgement for {ACK_STALL_S:g} s: {written}") from None


async def visible(conn: KafkaConnection, topic: str) -> None:
    """Return once `topic` exists and this principal may describe it (Write and Read imply Describe); else
    TopicAuthorizationFailedError (it may not: the rights hint), or, once it was asked for a second (a topic just
    created may not be in every broker's metadata yet), TopicMissing (the broker says it does not exist) or
    TopicNotVisible (another error). The clients would wait their request timeout (40 s) for its metadata, logging
    an error ten times a second, then fail with UnknownTopicOrPartitionError and a hint to check the bootstrap,
    which had worked (CLI trial: `tail` and `publish` before `topics create`)."""
    code = 0
    for _ in range(10):
        code = await topic_error(conn, topic)
        if code == 0:
            return
        if code == TopicAuthorizationFailedError.errno:
            raise TopicAuthorizationFailedError(topic)
        await asyncio.sleep(0.1)
    raise TopicMissing(topic) if code == UnknownTopicOrPartitionError.errno else TopicNotVisible([topic])


async def publish(conn: KafkaConnection, topic: str, records: Sequence[Record], progress: Callable[[int], None]) -> int:
    """Send every record (acks=all, idempotent) and wait for all acknowledgements, each told to `progress` as it
    comes; `Unacknowledged` once none came for `ACK_STALL_S` (those not acknowledged may or may not be on the topic).
    The caller has checked the topic is `visible`."""
    producer = clients.producer(conn, client_id=CLIENT_ID, linger_ms=5)
    await start_within(CLIENT_ID, "producer", producer, ACK_STALL_S)  # StartUnanswered: no producer id (ADR 0048)
    try:
        futures: list[asyncio.Future[RecordMetadata]] = []
        loop = asyncio.get_running_loop()
        last = loop.time()  # of the start, or of the last acknowledgement

        def answered(fut: asyncio.Future[RecordMetadata]) -> None:  # a batch aiokafka expired (40 s) is no answer
            nonlocal last
            if not fut.cancelled() and fut.exception() is None:
                last = loop.time()
                progress(1)  # as each comes: a publish interrupted says how many were acknowledged

        for key, value, headers in records:
            # a send waits for room in the producer's buffer, which fills once the broker stops answering, and room
            # comes a batch at a time as aiokafka expires one unsent (every 40 s): given up once no acknowledgement
            # came for ACK_STALL_S, saying how many did (before: still sending 150 s after the broker stopped, or
            # aiokafka's bare KafkaTimeoutError, said with a hint to check the bootstrap; CLI trial, the broker
            # stopped mid-publish of 100,000 records)
            try:
                fut = await within(producer.send(topic, value, key=key, headers=list(headers)),
                                   max(0.0, ACK_STALL_S - (loop.time() - last)))
            except (TimeoutError, KafkaTimeoutError):
                raise Unacknowledged(
                    f"the broker took no more records: {_acknowledged(futures)} of {len(records)} records "
                    f"acknowledged, {len(futures)} sent (those not acknowledged perhaps written), the rest not"
                ) from None
            fut.add_done_callback(answered)
            futures.append(fut)
        for done, fut in enumerate(asyncio.as_completed(futures)):
            await acknowledged(fut, f"{done} of {len(futures)} records acknowledged, the others perhaps written")
        return len(futures)
    finally:
        await close_within("commune-bus", "producer", producer.stop, STOP_TIMEOUT_S)


def _fetched(consumer: AIOKafkaConsumer) -> bool:
    """Every partition assigned has had a fetch answered (its high watermark known)."""
    return all(consumer.highwater(tp) is not None for tp in consumer.assignment())


def _acknowledged(futures: Sequence[asyncio.Future[RecordMetadata]]) -> int:
    return sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)


async def tail(conn: KafkaConnection, topic: str, from_beginning: bool, limit: int | None, idle_s: float | None,
               show: Callable[[ConsumerRecord[bytes, bytes]], None], since_ms: int | None = None) -> int:
    """Follow `topic` (read_committed) and `show` each record; stop after `limit` records or `idle_s` quiet seconds.
    With `since_ms`, each partition from its first record timestamped at or after it (Kafka's time index; the
    partitions the topic had at the start). A cancellation (Ctrl-C under `asyncio.run`) is taken between two records,
    never after a whole fetched batch: on a busy topic one batch is thousands of records. The `idle_s` quiet seconds
    count from the first fetch answered for every partition (or `FIRST_FETCH_S` past the start: a partition without
    a leader), not from the start: a slow connection (TLS and SASL on a loaded broker) took longer than `--idle 2`
    to its first fetch, and a topic with records was shown as "0 records" (a review of the tests' timing)."""
    await visible(conn, topic)
    consumer = clients.consumer(conn, *(() if since_ms is not None else (topic,)), client_id=CLIENT_ID, group_id=None,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    seen = 0
    loop = asyncio.get_running_loop()
    started = last = loop.time()
    heard = False
    try:
        await consumer.start()  # inside: a start that fails (no broker) closes what it opened too
        if since_ms is not None:
            tps = [TopicPartition(topic, p) for p in range((await partition_counts(conn, [topic]))[topic])]
            consumer.assign(tps)
            for tp, offset in (await time_offsets(consumer, tps, since_ms, await consumer.end_offsets(tps))).items():
                consumer.seek(tp, offset)
        while limit is None or seen < limit:
            batch = await consumer.getmany(timeout_ms=300, max_records=None if limit is None else limit - seen)
            for rec in (rec for records in batch.values() for rec in records):
                if limit is not None and seen >= limit:
                    break
                show(rec)
                seen += 1
                last = loop.time()
                await asyncio.sleep(0)  # where a cancellation is delivered
            if not heard and (_fetched(consumer) or loop.time() - started > FIRST_FETCH_S):
                heard, last = True, max(last, loop.time())  # what that fetch brought comes with the next getmany
            if idle_s is not None and heard and loop.time() - last > idle_s:
                break
        return seen
    finally:
        await consumer.stop()
