"""The key store's start gives up on a broker that stops answering mid-restore, as every restore does
(`changelog.read_to_end`'s stall limit), instead of waiting for it for ever: a service's run restarts, a command
says so in one line."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from aiokafka import ConsumerRecord

from schemas.topics import KEYS_APPLICANTS, KEYS_DEAD_LETTERS, scoped
from services.common.admin import ensure_topics
from services.common.changelog import RestoreStalled
from services.common.settings import KafkaConnection
from services.privacy import store as key_store
from services.privacy.store import KeyStore, key_messages
from tests import naming
from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture
from tests.kafkatools import Producing
from tests.privacy.keys import keyring

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
KEYS = 100_000
"""Applicants' keys written, ~30 MB in one partition: several fetches (`clients.FETCH_BYTES`, 10 MB, a partition
each), so the restore goes back to the broker after its first."""


class FreezingStore(KeyStore):
    """A key store that freezes its broker (SIGSTOP) once it applied its first fetched records."""

    broker_pid = 0

    def apply_all(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        if records and not self.applied:
            os.kill(self.broker_pid, signal.SIGSTOP)
        super().apply_all(records)


async def test_a_key_store_restore_gives_up_once_the_broker_stops_answering(
        own_broker: OwnBroker, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A broker frozen mid-restore ends the key store's start with `RestoreStalled` once it read nothing for
    `RESTORE_STALL_S` (a Kafka error: a service's run restarts, a command says it in one line). Before, it asked the
    frozen broker again every 200 ms for as long as it was frozen (still reading after 180 s)."""
    monkeypatch.setattr(key_store, "RESTORE_STALL_S", 2.0, raising=False)
    conn = KafkaConnection(bootstrap=own_broker.bootstrap)
    ns = "ks" + naming.unique()
    await ensure_topics(conn, [scoped(KEYS_APPLICANTS, ns), scoped(KEYS_DEAD_LETTERS, ns)])
    ring = keyring()
    records = [r for n in range(KEYS) for r in ring.key_for(ring.subject("cccd", f"{n:012d}"))[2]]
    async with Producing(own_broker.bootstrap) as producing:
        sent = [await producing.producer.send(topic, value, key=key, partition=0)
                for topic, key, value in key_messages(records, ns)]
        await asyncio.gather(*sent)
    store = FreezingStore(conn, ns, keyring(), client_id="tests-keys-outage")
    store.broker_pid = int((own_broker.state / "kafka.pid").read_text())
    starting = asyncio.create_task(store.start())
    try:
        done, _ = await asyncio.wait({starting}, timeout=60)
        applied = store.applied
    finally:
        os.kill(store.broker_pid, signal.SIGCONT)  # the old code's start then ends too, every key read
        await asyncio.wait({starting}, timeout=60)
        await store.stop()
        store.keyring.close()
    assert 0 < applied < KEYS, "frozen mid-restore"
    assert starting in done, "the key store's start still reading 60 s after the broker froze"
    assert isinstance(starting.exception(), RestoreStalled), "a Kafka error: a service's run restarts"
