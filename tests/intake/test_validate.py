"""Validating a fetch (`services.intake.validate.Validation`) into a transaction's outputs, without a broker: each event
published once however often it is repeated, and a record off its commune's partition moved there once."""

from __future__ import annotations

from typing import cast

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY

from schemas.events import Family
from schemas.topics import CANONICAL, MAX_RECORD_BYTES, RAW, scoped
from services.common.partitioner import partition_for
from services.intake.dedup import SeenByPartition
from services.intake.outputs import REROUTED_FROM, WRITTEN_AT, TransactionOutputs
from services.intake.settings import IntakeSettings
from services.intake.validate import Topics, Validation
from tests.intake.fakes import Batch, Producer
from tests.samples import COMMUNE, canonical_dossier, dumps

pytestmark = pytest.mark.unit

TOPICS = Topics.of("t1")
RAW_TOPIC = scoped(RAW[Family.DOSSIER], "t1").name
PARTITIONS = {**{t: RAW[f].partitions for t, f in TOPICS.family_of.items()},
              **{t: CANONICAL[f].partitions for f, t in TOPICS.canonical.items()}}
HOME = partition_for(COMMUNE.encode(), PARTITIONS[RAW_TOPIC])
"""The raw partition the sample commune hashes to."""
AWAY = (HOME + 1) % PARTITIONS[RAW_TOPIC]
Headers = list[tuple[str, bytes]]


def raw(partition: int, offset: int, event_id: str, headers: Headers | None = None,
        timestamp: int = 0) -> ConsumerRecord[bytes, bytes]:
    """An unkeyed raw record of the sample commune's dossier event `event_id`, at `partition` and `offset`, appended
    at `timestamp` (ms)."""
    value = dumps(canonical_dossier(event_id))
    return ConsumerRecord(RAW_TOPIC, partition, offset, timestamp, 1, None, value, None, 0, len(value), headers or [])


async def validated(seen: SeenByPartition, *records: ConsumerRecord[bytes, bytes]) -> TransactionOutputs:
    """`records` (of one raw partition) as one fetch, validated into a new transaction's outputs."""
    out = TransactionOutputs(cast(AIOKafkaProducer, Producer()), PARTITIONS)
    await Validation(TOPICS, PARTITIONS, seen, IntakeSettings()).partition(
        TopicPartition(RAW_TOPIC, records[0].partition), list(records), out)
    return out


def published_ids(out: TransactionOutputs) -> list[bytes]:
    """The ce_id of each canonical record in `out`."""
    return [dict(headers)["ce_id"] for topic, _, batch in out.batches if topic == TOPICS.canonical[Family.DOSSIER]
            for _, _, headers in cast(Batch, batch).records]


def dead_letter_reasons(out: TransactionOutputs) -> list[bytes | None]:
    return [dict(headers).get("dlq.reason") for topic, _, _, headers, _ in out.others if topic == TOPICS.dlq]


async def test_an_event_repeated_in_one_fetch_or_the_next_is_published_once() -> None:
    """Two copies of one event (source and id) in one fetch give one canonical record and a duplicate_event dead
    letter; a third copy in the next fetch is a duplicate_event dead letter too."""
    seen = SeenByPartition()
    first = await validated(seen, raw(HOME, 0, "evt-1"), raw(HOME, 1, "evt-1"))
    assert published_ids(first) == [b"evt-1"]
    assert dead_letter_reasons(first) == [b"duplicate_event"]
    second = await validated(seen, raw(HOME, 2, "evt-1"))
    assert published_ids(second) == []
    assert dead_letter_reasons(second) == [b"duplicate_event"]


async def test_a_record_off_its_communes_partition_is_moved_there_not_published() -> None:
    """A valid record on a raw partition its commune does not hash to is sent again, whole and keyed by its commune,
    to its commune's partition of the same raw topic, marked with where it came from and when it was written (the
    copy's own timestamp is the move's: ADR 0042); nothing is published."""
    record = raw(AWAY, 5, "evt-1", [("ce_traceparent", b"00-1-2-01")], timestamp=1_796_000_000_123)
    out = await validated(SeenByPartition(), record)
    assert published_ids(out) == [] and dead_letter_reasons(out) == []
    [(topic, value, key, headers, partition)] = out.others
    assert (topic, partition, key, value) == (RAW_TOPIC, HOME, COMMUNE.encode(), record.value)
    assert headers == [*record.headers, (REROUTED_FROM, f"{RAW_TOPIC}/{AWAY}/5".encode()),
                       (WRITTEN_AT, b"1796000000123")]
    assert out.rerouted[Family.DOSSIER] == 1


async def test_a_record_whose_copy_would_pass_the_raw_topics_limit_is_a_dead_letter_not_moved() -> None:
    """Off its commune's partition with 10 MiB of headers (its producer compressed them: the broker limits the
    compressed batch): not moved, whose copy the producer refused and every transaction holding it aborted, run after
    run (audit), but one payload_too_large dead letter; one just under the limit is moved."""
    big = [(f"x-{i}", b"a" * 10_000) for i in range(MAX_RECORD_BYTES // 10_000)]
    out = await validated(SeenByPartition(), raw(AWAY, 8, "evt-4", big))
    assert published_ids(out) == [] and not out.rerouted
    assert dead_letter_reasons(out) == [b"payload_too_large"]
    fits = await validated(SeenByPartition(), raw(AWAY, 9, "evt-5", big[:len(big) - 2]))
    assert fits.rerouted[Family.DOSSIER] == 1 and dead_letter_reasons(fits) == []
    # names counted in bytes as sent: 4 M characters of "ố" are 12 MB (review: counted as characters, moved)
    wide = [("ố" * 1000 + str(i), b"") for i in range(4000)]
    out = await validated(SeenByPartition(), raw(AWAY, 10, "evt-6", wide))
    assert not out.rerouted and dead_letter_reasons(out) == [b"payload_too_large"]


async def test_a_record_moved_once_is_published_on_its_communes_partition_and_never_moved_again() -> None:
    """A record intake moved arrives on its commune's partition with the re-routing header and is published there;
    one carrying the header on another partition is neither moved again (two workers disagreeing on a partition
    count would pass it back and forth) nor published: a producer that sets the header there would get an event
    published twice, once from each partition, de-duplication being per partition (review of this session: a
    forged header on a second copy did so). It is an invalid_field dead letter naming the header."""
    header = [(REROUTED_FROM, f"{RAW_TOPIC}/{AWAY}/3".encode())]
    home = await validated(SeenByPartition(), raw(HOME, 6, "evt-2", header))
    assert published_ids(home) == [b"evt-2"] and not home.rerouted
    forged = await validated(SeenByPartition(), raw(AWAY, 7, "evt-3", header))
    assert published_ids(forged) == [] and not forged.rerouted
    assert dead_letter_reasons(forged) == [b"invalid_field"]


async def test_the_workers_clock_against_the_brokers_is_a_gauge() -> None:
    """`commune_intake_clock_ahead_seconds`: this worker's clock minus the broker's append time of the newest record
    it fetched, here 300 s ahead of a record appended as it was read; negative, behind (ADR 0043)."""
    appended = 1_796_000_000_000
    for ahead_ms in (300_000, -90_000):
        validation = Validation(TOPICS, PARTITIONS, SeenByPartition(), IntakeSettings())
        validation.now_ms = appended + ahead_ms
        out = TransactionOutputs(cast(AIOKafkaProducer, Producer()), PARTITIONS)
        await validation.partition(TopicPartition(RAW_TOPIC, HOME), [raw(HOME, 0, "evt-9", timestamp=appended)], out)
        assert REGISTRY.get_sample_value("commune_intake_clock_ahead_seconds") == ahead_ms / 1000
