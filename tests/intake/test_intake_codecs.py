"""A raw topic takes batches in whatever codec its producer chose (a librdkafka source: lz4, snappy, zstd; ours:
none): intake publishes the records of each, on the real broker. Before cramjam was installed (aiokafka's codecs but
gzip), the first fetch of such a batch raised `UnsupportedCodecError` out of `getmany` and the worker ended at every
start: nothing of any of its partitions was published (audit)."""

from __future__ import annotations

import asyncio

import pytest

from schemas import wire
from schemas.events import Family
from schemas.topics import CANONICAL, RAW
from services.common import clients
from services.common.settings import KafkaConnection
from tests.intake.conftest import StartIntake
from tests.kafkatools import read_all
from tests.samples import dumps, portal_dossier

pytestmark = pytest.mark.kafka
CODECS = ("gzip", "snappy", "lz4", "zstd")
COMMUNE = "02269"


async def _write(bootstrap: str, topic: str, codec: str, codes: list[str]) -> None:
    producer = clients.producer(KafkaConnection(bootstrap=bootstrap), client_id=f"tests-{codec}",
                                compression_type=codec, linger_ms=50)
    await producer.start()
    try:
        sent = [await producer.send(topic, dumps(portal_dossier(code, status=2)), key=COMMUNE.encode(),
                                    headers=[("commune-code", COMMUNE.encode())]) for code in codes]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def test_raw_records_of_every_codec_are_published(kafka_bootstrap: str, intake_topics: dict[str, str],
                                                  start_intake: StartIntake) -> None:
    """Five dossiers in a batch of each codec, written before intake starts: all twenty canonical, intake running."""
    raw = intake_topics[RAW[Family.DOSSIER].name]
    codes = {codec: [f"CODEC-{codec}-{i}" for i in range(5)] for codec in CODECS}
    for codec, batch_codes in codes.items():
        asyncio.run(_write(kafka_bootstrap, raw, codec, batch_codes))
    proc = start_intake()
    expected = sorted(code for batch_codes in codes.values() for code in batch_codes)
    canonical = asyncio.run(read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name],
                                     expect=len(expected), timeout=90))
    assert proc.poll() is None, "intake runs on"
    assert sorted(wire.decode(r.headers, r.value).subject for r in canonical) == expected
