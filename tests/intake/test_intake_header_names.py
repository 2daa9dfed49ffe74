"""A header name that is not UTF-8, written to a raw topic by a client that sends a name's bytes as given (librdkafka,
kcat; here a hand-built batch in a produce request of its own), on the real broker (ADR 0050): intake dead-letters
that record and publishes every record around it once."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from schemas import wire
from schemas.admin import commune_provinces
from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, RAW
from services.common.admin import partition_counts
from services.common.partitioner import partition_for
from services.common.settings import KafkaConnection
from tests.intake.conftest import StartIntake
from tests.kafkatools import produce, read_all
from tests.raw_batches import GZIP, batch, write_batch
from tests.samples import dumps, portal_dossier

pytestmark = pytest.mark.kafka

BAD_NAME = b"\xff\xfe"
COMMUNE = "02269"


def _dossier(code: str, commune: str = COMMUNE) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    return commune.encode(), dumps(portal_dossier(code, status=2)), [(b"commune-code", commune.encode())]


def _elsewhere(partitions: int, home: int) -> list[str]:
    """A commune on each raw partition but `home` (their records come in the same fetch as the bad batch)."""
    found: dict[int, str] = {}
    for commune in sorted(commune_provinces()):
        found.setdefault(partition_for(commune.encode(), partitions), commune)
    return [found[p] for p in sorted(found) if p != home]


def test_a_header_name_that_is_not_utf8_is_one_dead_letter_and_every_record_around_it_is_published(
    kafka_bootstrap: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """On its commune's raw partition: a batch of five dossiers, the third with a header named b"\\xff\\xfe", a gzip
    batch of three, the second so named, and two dossiers after; on every other partition two dossiers, fetched with
    them. Each bad record is one `not_utf8` dead letter (field `(headers)`) at its offset; every other record is
    canonical once, those written after intake started too, and intake runs on. Before: its first fetch raised
    UnicodeDecodeError out of `getmany` and the worker ended (exit 1), as it would at every restart: nothing of any
    partition was published."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    raw = intake_topics[RAW[Family.DOSSIER].name]
    partitions = asyncio.run(partition_counts(conn, [raw]))[raw]
    home = partition_for(COMMUNE.encode(), partitions)
    first = [_dossier(f"HN-A{i}") for i in range(5)]
    first[2] = (first[2][0], first[2][1], [*first[2][2], (BAD_NAME, b"v")])
    second = [_dossier(f"HN-B{i}") for i in range(3)]
    second[1] = (second[1][0], second[1][1], [(BAD_NAME + b"name", None), *second[1][2]])
    others = [_dossier(f"HN-O{commune}-{i}", commune) for commune in _elsewhere(partitions, home) for i in range(2)]
    after = [_dossier(f"HN-C{i}") for i in range(2)]
    later = [_dossier(f"HN-L{i}") for i in range(2)]
    published = {orjson.loads(r[1])["MaHoSo"] for r in (*first, *second, *others, *after, *later)} - {"HN-A2", "HN-B1"}

    async def write() -> list[int]:
        bases = [await write_batch(kafka_bootstrap, raw, home, batch(first)),
                 await write_batch(kafka_bootstrap, raw, home, batch(second, GZIP))]
        await produce(kafka_bootstrap, raw, _as_sent(others + after))
        return bases

    bases = asyncio.run(write())
    proc = start_intake()

    async def outcome() -> tuple[list, list]:
        await asyncio.sleep(3)  # a record written while intake runs, after the bad ones were fetched
        await produce(kafka_bootstrap, raw, _as_sent(later))
        canonical = await read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name],
                                   expect=len(published), timeout=90)
        return canonical, await read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=2, timeout=30)

    canonical, dlq = asyncio.run(outcome())
    assert proc.poll() is None, "intake runs on"
    codes = [wire.decode(r.headers, r.value).subject for r in canonical]
    assert sorted(codes) == sorted(published), "every record but the bad ones, once"
    letters = sorted((c.source_partition, c.source_offset, c.reason, c.field)
                     for c in (DeadLetterContext.from_headers(r.headers) for r in dlq))
    assert letters == [(home, bases[0] + 2, Reason.NOT_UTF8, "(headers)"),
                       (home, bases[1] + 1, Reason.NOT_UTF8, "(headers)")]


def _as_sent(records: list[tuple[bytes, bytes, list[tuple[bytes, bytes]]]]) -> list[tuple[bytes, bytes,
                                                                                       list[tuple[str, bytes]]]]:
    """Records whose header names are UTF-8, for aiokafka's producer."""
    return [(key, value, [(name.decode(), v) for name, v in headers]) for key, value, headers in records]
