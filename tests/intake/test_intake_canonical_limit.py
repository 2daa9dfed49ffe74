"""INTAKE_MAX_CANONICAL_BYTES raised above the default: the canonical topics must take such records (the settings
audit: they kept the broker's default, 1,048,588 bytes, so a canonical record between the two was refused by the
broker in every transaction that carried it, the transaction aborted and the record came back, run after run)."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.events import Family
from schemas.topics import BROKER_MESSAGE_BYTES, CANONICAL, scoped
from services.common import clients
from services.common.admin import ensure_topics, list_topics
from services.common.settings import KafkaConnection
from tests.intake.conftest import StartIntake
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka

RAISED = 2_000_000


async def _limit(conn: KafkaConnection, topic: str) -> int:
    client = clients.admin(conn)
    await client.start()
    try:
        [response] = await client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": ""})])
    finally:
        await client.close()
    return int(dict((e[0], e[1]) for e in response.resources[0][4])["max.message.bytes"])


async def test_a_raised_canonical_limit_creates_canonical_topics_that_take_such_records(
        kafka_bootstrap: str, namespace: str, start_intake: StartIntake) -> None:
    """Intake creates the canonical topics with the raised limit and the default's room for a batch; a record of
    1.5 MB, past the broker's default, is accepted there."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    start_intake(INTAKE_MAX_CANONICAL_BYTES=str(RAISED))
    topic = scoped(CANONICAL[Family.DOSSIER], namespace).name

    async def created() -> bool:
        return topic in await list_topics(conn)

    await eventually_async(created, timeout=60, interval=0.3, what="intake created the canonical topics")
    assert await _limit(conn, topic) == RAISED + BROKER_MESSAGE_BYTES - 1_000_000
    producer = clients.producer(conn, client_id="tests-large")
    await producer.start()
    try:
        sent = await (await producer.send(topic, b"x" * 1_500_000, key=b"00001"))
    finally:
        await producer.stop()
    assert sent.offset == 0


async def test_canonical_topics_that_would_refuse_the_raised_limit_stop_intakes_start(
        kafka_bootstrap: str, namespace: str, start_intake: StartIntake, tmp_path: Path) -> None:
    """Existing canonical topics at Kafka's default limit (this broker's own default is 10 MiB, so they are made with
    it set): intake refuses to start (exit 1), its log naming the setting and the limit they need, rather than meet
    the first large record run after run."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [replace(scoped(spec, namespace), config={"max.message.bytes": str(BROKER_MESSAGE_BYTES)})
                               for spec in CANONICAL.values()])
    refused = start_intake(INTAKE_MAX_CANONICAL_BYTES=str(RAISED))
    code = await asyncio.to_thread(_exit_code, refused, 90)
    log = (tmp_path / "intake.log").read_text()
    assert code == 1, log[-2000:]
    assert "INTAKE_MAX_CANONICAL_BYTES (2000000)" in log and f"max.message.bytes={RAISED + 48_588}" in log


def _exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
