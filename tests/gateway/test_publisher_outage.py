"""The gateway's publisher gives a request up within its Kafka timeout and the dropped producer's stop when the broker
stops answering mid-transaction (an Idempotency-Key's lease counts on it, `GatewaySettings.key_held_s`)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from schemas.events import Family
from schemas.topics import RAW, scoped
from schemas.wire import KafkaRecord
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.gateway.publisher import STOP_TIMEOUT_S, BrokerUnavailable, KafkaPublisher
from tests import naming
from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
TIMEOUT_S = 2.0


async def test_a_transaction_the_frozen_broker_holds_is_given_up_within_the_kafka_timeout(
        own_broker: OwnBroker) -> None:  # noqa: F811
    """A broker frozen (SIGSTOP) under a request's transaction: `publish` raises BrokerUnavailable within
    GATEWAY_KAFKA_TIMEOUT_S and the producer's stop, while the broker is still frozen. It waited for the frozen broker
    as long as it stayed frozen: a timed-out transaction aborts, and aiokafka's abort waits for the broker's answer;
    the publisher's lock held every request behind it meanwhile, past the Idempotency-Key's lease, which counts each
    wait on Kafka within the timeout (a retry elsewhere then won the key and published it again)."""
    conn = KafkaConnection(bootstrap=own_broker.bootstrap)
    raw = scoped(RAW[Family.DOSSIER], "gw" + naming.unique())
    await ensure_topics(conn, [raw])
    pid = int((own_broker.state / "kafka.pid").read_text())
    publisher = KafkaPublisher(conn, transactional_id=f"test-gateway-{raw.name}", timeout_s=TIMEOUT_S)
    await publisher.connect()
    os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    publishing = asyncio.ensure_future(publisher.publish([(raw.name, KafkaRecord(b"02269", b'{"n": 1}', []))]))
    try:
        done, _ = await asyncio.wait({publishing}, timeout=60)
        took = time.monotonic() - began
    finally:
        os.kill(pid, signal.SIGCONT)
        await asyncio.wait({publishing}, timeout=60)
        await publisher.close()
    assert publishing in done, "the request still waited for the frozen broker after 60 s"
    assert isinstance(publishing.exception(), BrokerUnavailable)
    assert took < TIMEOUT_S + STOP_TIMEOUT_S + 5, took
