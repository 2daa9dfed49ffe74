"""What one transaction publishes: canonical record batches, dead letters, re-routed raw records, changelog records
and input offsets.

Canonical records are appended to one open record batch per topic-partition
(aiokafka's batch API: a per-record `send` costs a coroutine and a future each,
more than validating the record). Partitions are chosen by
`services.common.partitioner`, as every Kafka client's default partitioner does
(murmur2 of the key), so a commune's events land where any producer keyed by
that commune puts them. Dead letters, re-routed records and changelog records
(few) keep the ordinary `send`. Everything goes out at once in `flush`, so the
transaction adds its partitions in one request; `flush` returns every send's
future, and the transaction commits only once all of them succeeded.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.limits import LATEST
from schemas.topics import STAMPED_BY_BROKER
from services.common.partitioner import partition_for

Headers = Sequence[tuple[str, bytes]]
REROUTED_FROM = "intake.rerouted-from"
"""Header of a raw record intake moved to its commune's partition: `<topic>/<partition>/<offset>` it came from."""
WRITTEN_AT = "intake.written-at"
"""Header of a raw record written again, when the original was written to Kafka (`written_at`, ms since the epoch): by
intake moving it to its commune's partition, and by `dlq replay` (the letter's rejection time, the latest it can have
been written). The copy's own timestamp is its own, which may come after an erasure the original preceded."""


LATEST_WRITTEN_MS = int(LATEST.timestamp() * 1000)
"""The latest time `written_at` gives (`schemas.limits.LATEST`): a later one, by a broker's clock gone wrong, is taken
as this, which a datetime holds."""


def written_at(timestamp_ms: int, headers: Sequence[tuple[str, bytes | None]], read_ms: int,
               timestamp_type: int = 0) -> int:
    """When a raw record was written to Kafka, in ms since the epoch: its timestamp (on raw topics the broker's append
    time, `schemas.topics.RAW_TIMESTAMPS`, which no producer sets), or an earlier `WRITTEN_AT` it carries. A producer
    may set the header too, but it only makes the time earlier: its record then counts as written before an erasure
    it followed and its applicant is sealed erased (ADR 0042), which costs no one else anything. A timestamp the
    broker did not stamp (`timestamp_type` not `STAMPED_BY_BROKER`: a topic left at CreateTime, where a producer's
    clock may say anything) is never taken after `read_ms`, when it was read; one it stamped is taken as it is, so
    that the time is all the broker's, as an erasure's mark is (ADR 0043), whatever this host's clock says.

    Never before the epoch nor after `LATEST_WRITTEN_MS`: at CreateTime the broker keeps any 64-bit time a producer
    sends (-2, -10**14 and -2**62 measured), and one before the year 1 raised out of the conversion to a datetime,
    outside the decision's catch-all: the run ended and its restart read the same record again, stopping the
    partition. A time before the epoch is no time (Kafka's own "none" is -1) and is taken as the epoch, not as when it
    was read: like any earlier time, it counts as written before every erasure, so a record of an erased applicant
    stays erased (ADR 0042) and its producer's clock can only cost its own record. The epoch is also the least a
    re-routed copy's `WRITTEN_AT` and a dead letter's `dlq.source.written-at` (digits only) can say."""
    written = timestamp_ms if timestamp_type == STAMPED_BY_BROKER else min(timestamp_ms, read_ms)
    for name, value in headers:
        if name == WRITTEN_AT and value is not None and value.isdigit() and len(value) <= 15:
            written = min(written, int(value))
    return min(max(written, 0), LATEST_WRITTEN_MS)


def record_bytes(record: wire.KafkaRecord) -> int:
    """About what `record` weighs in a record batch (key, value, headers), to compare with a topic's limit."""
    return len(record.key) + len(record.value) + sum(len(k) + len(v) for k, v in record.headers) + 64


HEADER_ROOM = 64 * 1024
"""A canonical value this far below the limit cannot cross it with its headers (bounded event attributes): the exact
size is only added up for larger ones."""


def fits_canonical(record: wire.KafkaRecord, limit: int) -> bool:
    """Whether intake publishes canonical `record` under `limit` (`INTAKE_MAX_CANONICAL_BYTES`) rather than
    dead-letter it (`payload_too_large`): intake's own test, which the gateway applies too, so that what it answers
    202 is not dead-lettered for its size."""
    return len(record.value) < limit - HEADER_ROOM or record_bytes(record) <= limit


class TransactionOutputs:
    """The records validated for one task's next transaction, with the input offsets and counts they stand for."""

    def __init__(self, producer: AIOKafkaProducer, partitions: dict[str, int]) -> None:
        self.producer = producer
        self.partitions = partitions
        """The real partition count of each canonical topic (from the cluster's metadata)."""
        self.batches: list[tuple[str, int, BatchBuilder]] = []
        self.open: dict[tuple[str, int], BatchBuilder] = {}
        self.others: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], int | None]] = []
        self.outcomes: Counter[tuple[Family, Reason | None]] = Counter()
        """Records per (family, dead-letter reason); reason None = published canonical."""
        self.rerouted: Counter[Family] = Counter()
        """Records moved to their commune's raw partition, per family."""
        self.offsets: dict[TopicPartition, int] = {}
        """Next offset to consume per raw partition, committed with the transaction."""
        self.records = 0
        self.bytes = 0
        self.timestamps: list[int] = []
        self.opened_at = time.perf_counter()
        """When the first records were validated into it (the oldest waiting transaction goes first)."""

    def canonical(self, topic: str, record: wire.KafkaRecord) -> None:
        self.batched(topic, record.key, record.value, record.headers)

    def batched(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        """A keyed record into its partition's record batch (one send per batch, not per record): `topic`'s real
        partition count must be in `partitions`."""
        slot = (topic, partition_for(key, self.partitions[topic]))
        builder = self.open.get(slot)
        if builder is None or builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            if builder is not None:  # full: it goes as it is, the next one starts
                builder.close()
            builder = self.open[slot] = self.producer.create_batch()
            self.batches.append((*slot, builder))
            builder.append(timestamp=None, key=key, value=value, headers=headers)

    def dead_letter(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
                    context: DeadLetterContext) -> None:
        """A dead letter: the record given (the original, or its sealed form), the `dlq.*` headers of `context` after
        its own."""
        self.others.append((topic, value, key, [*headers, *context.headers()], None))

    def reroute(self, topic: str, partition: int, commune: str, value: bytes | None, headers: Headers,
                origin: str, written_ms: int) -> None:
        """The original raw record again, keyed by its commune, in its commune's partition of the same raw topic.

        Its owner de-duplicates and publishes it; `origin` (`<topic>/<partition>/<offset>`) says where it was sent,
        `written_ms` when it was written (`written_at`).
        """
        moved = [(REROUTED_FROM, origin.encode()), (WRITTEN_AT, str(written_ms).encode())]
        self.others.append((topic, value, commune.encode(), [*headers, *moved], partition))

    def record(self, topic: str, key: bytes, value: bytes) -> None:
        """A data-key record (ADR 0015) written with this transaction's outputs, batched like the canonical ones."""
        self.batched(topic, key, value, [])

    def changelog(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        """A de-duplication changelog record, in the changelog partition of its raw partition."""
        self.others.append((topic, value, key, [], partition))

    def full(self, max_records: int, max_bytes: int) -> bool:
        """No room for another fetch: the next records wait for the following transaction."""
        return self.records >= max_records or self.bytes >= max_bytes

    async def flush(self) -> list[asyncio.Future[RecordMetadata]]:
        """Queue every record; the futures say whether each send (a batch, or one record) reached its partition."""
        sent: list[asyncio.Future[RecordMetadata]] = []
        for topic, partition, builder in self.batches:
            builder.close()
            sent.append(await self.producer.send_batch(builder, topic, partition=partition))
        for topic, value, key, headers, p in self.others:
            sent.append(await self.producer.send(topic, value, key=key, headers=headers, partition=p))
        return sent
