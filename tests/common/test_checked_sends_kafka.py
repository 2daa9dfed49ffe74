"""The transactional writers outside the workers check each send before committing: the gateway's publisher,
`commune-bus dlq replay` and the erasure tool.

aiokafka commits a transaction even when the broker refused one of its batches; each case here makes the broker
refuse one (a record over the topic's `max.message.bytes`) and shows that the caller sees a failure and that
nothing of the transaction is visible to a read_committed reader, where before the rest was committed (a `202`
for a request whose event was never written, a dead letter marked replayed though its re-drive was refused, an
erasure reported done without its audit record).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest

from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.replay import DLQ_REPLAYED
from schemas.topics import DLQ_INTAKE, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES, RAW, scoped
from schemas.wire import KafkaRecord
from services.cli.deadletters import dead_letter
from services.cli.replaying import replay
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.common.transactions import SendFailed
from services.gateway.publisher import BrokerUnavailable, KafkaPublisher
from services.privacy.erase import erase_subject
from tests.kafkatools import read_all

pytestmark = pytest.mark.kafka
LIMIT = {"max.message.bytes": "1024"}
"""A topic that refuses any batch over 1 kB: the broker's answer to the over-long record, after the send."""


@pytest.fixture
def namespace(unique: str) -> str:
    return f"t{unique}"


def test_the_gateway_answers_no_202_for_a_request_whose_record_the_broker_refused(
        kafka_bootstrap: str, namespace: str) -> None:
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    raw = scoped(RAW[Family.DOSSIER], namespace)
    small = scoped(RAW[Family.MOBILE_TEAM], namespace)

    async def scenario() -> tuple[BaseException | None, list[bytes | None]]:
        await ensure_topics(conn, [replace(raw, config=LIMIT), small])
        publisher = KafkaPublisher(conn, transactional_id=f"test-gateway-{namespace}", timeout_s=30)
        refused: BaseException | None = None
        try:
            try:  # one request: a small record and one the broker refuses, in one transaction
                await publisher.publish([(small.name, KafkaRecord(b"02269", b'{"n": 1}', [])),
                                         (raw.name, KafkaRecord(b"02269", b"x" * 4096, []))])
            except BrokerUnavailable as exc:
                refused = exc
            await publisher.publish([(small.name, KafkaRecord(b"02269", b'{"n": 2}', []))])  # the next one works
        finally:
            await publisher.close()
        committed = await read_all(kafka_bootstrap, small.name, expect=1, idle=1)
        return refused, [r.value for r in committed]

    refused, committed = asyncio.run(scenario())
    assert isinstance(refused, BrokerUnavailable), "the request must fail, not be answered 202"
    assert committed == [b'{"n": 2}'], "nothing of the refused request is visible, its next request is"


def test_a_refused_redrive_leaves_its_dead_letter_unreplayed(kafka_bootstrap: str, namespace: str) -> None:
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    raw = scoped(RAW[Family.DOSSIER], namespace)
    log = scoped(DLQ_REPLAYED, namespace)
    dlq = scoped(DLQ_INTAKE, namespace).name
    context = DeadLetterContext(reason=Reason.MISSING_COMMUNE_HEADER, field="", message="", source_topic=raw.name,
                                source_partition=0, source_offset=7, rejected_at="2026-12-01T00:00:00Z")
    letter = dead_letter(0, 3, b"02269", b"x" * 4096, context.headers())

    async def scenario() -> list[bytes | None]:
        await ensure_topics(conn, [replace(raw, config=LIMIT), log])
        with pytest.raises(SendFailed):
            await replay(conn, namespace, [letter], dlq, done=set(), set_headers={})
        return [r.key for r in await read_all(kafka_bootstrap, log.name, idle=1)]

    assert asyncio.run(scenario()) == [], "the replay log must not record a re-drive the broker refused"


def test_an_erasure_whose_audit_record_is_refused_fails(kafka_bootstrap: str, namespace: str) -> None:
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    audit = scoped(PRIVACY_AUDIT, namespace)

    async def scenario() -> list[bytes | None]:
        others = [scoped(t, namespace) for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_ERASURES)]
        await ensure_topics(conn, [*others, replace(audit, config={"max.message.bytes": "128"})])
        with pytest.raises(SendFailed):
            await erase_subject(conn, namespace, f"a-{uuid.uuid4().hex}", requested_by="test-operator")
        return [r.value for r in await read_all(kafka_bootstrap, audit.name, idle=1)]

    assert asyncio.run(scenario()) == [], "no audit record, and the command fails instead of reporting done"
