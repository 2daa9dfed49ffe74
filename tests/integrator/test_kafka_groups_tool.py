"""`infra/kafka/kafka.sh groups`: the runbooks' offset reset (Kafka's own ConsumerGroupCommand) works on the local
broker, as its admin on the secure one: a group's committed offsets move back to the start."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest
from aiokafka import TopicPartition

from schemas.topics import RAW_DOSSIER, scoped
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests.kafkatools import ROOT, produce

pytestmark = pytest.mark.kafka
KAFKA_SH = str(ROOT / "infra/kafka/kafka.sh")
RECORDS = 6


def groups(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KAFKA_SH, "groups", *args], capture_output=True, text=True, timeout=120, check=False)


async def consumed_and_committed(bootstrap: str, topic: str, group: str) -> dict[TopicPartition, int]:
    consumer = clients.consumer(KafkaConnection(bootstrap=bootstrap), client_id="tests", group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    consumer.subscribe([topic])
    await consumer.start()
    try:
        seen = 0
        while seen < RECORDS:
            seen += sum(len(batch) for batch in (await consumer.getmany(timeout_ms=1000)).values())
        await consumer.commit()
    finally:
        await consumer.stop()
    return await committed(bootstrap, topic, group)


async def committed(bootstrap: str, topic: str, group: str) -> dict[TopicPartition, int]:
    consumer = clients.consumer(KafkaConnection(bootstrap=bootstrap), client_id="tests", group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(RAW_DOSSIER.partitions)]
        return {tp: offset for tp in parts if (offset := await consumer.committed(tp)) is not None}
    finally:
        await consumer.stop()


def test_the_groups_tool_describes_a_group_and_resets_its_offsets(kafka_bootstrap: str, unique: str) -> None:
    local = subprocess.run([KAFKA_SH, "bootstrap"], capture_output=True, text=True, check=True).stdout.strip()
    if os.environ.get("KAFKA_BOOTSTRAP") or local != kafka_bootstrap:
        pytest.skip("the tests' broker is not the local one of infra/kafka")
    spec, group = scoped(RAW_DOSSIER, f"groups{unique}"), f"groups-tool-{unique}"
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [spec]))
    asyncio.run(produce(kafka_bootstrap, spec.name, [(f"{i:05d}".encode(), b"{}", []) for i in range(RECORDS)]))
    before = asyncio.run(consumed_and_committed(kafka_bootstrap, spec.name, group))
    assert sum(before.values()) == RECORDS

    described = groups("--describe", "--group", group)
    assert described.returncode == 0, described.stderr
    assert spec.name in described.stdout and "LOG-END-OFFSET" in described.stdout

    reset = groups("--reset-offsets", "--group", group, "--topic", spec.name, "--to-earliest", "--execute")
    assert reset.returncode == 0, reset.stderr
    after = asyncio.run(committed(kafka_bootstrap, spec.name, group))
    assert after.keys() == before.keys() and set(after.values()) == {0}
