"""`KeyStore.refresh` waits for a key record whose transaction was committed and whose markers are not written yet.

An event is read once its own partition has its commit marker; its key record's partition may not have it yet
(the coordinator writes the markers after the commit returns). `refresh` read the key topics to their last stable
offset, which stops short of that record, and the key was taken for erased: notify told nobody. Here a transaction
left open while `refresh` begins, and committed after, stands for those pending markers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.events import Family
from schemas.topics import EVENTS_DOSSIER, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, scoped
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from services.privacy.applicant import open_applicant
from services.privacy.key_records import KeyUnknown
from services.privacy.store import KeysBehind, KeyStore, key_messages
from tests.kafkatools import transactions_settled
from tests.privacy.keys import keyring
from tests.privacy.writer import person, write_sealed
from tests.samples import HDR

pytestmark = pytest.mark.kafka


async def test_refresh_waits_for_a_key_committed_as_it_begins(kafka_bootstrap: str, unique: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The key record's transaction is committed once `refresh` has read where to wait to, and the store's tail
    runs only after that: a `refresh` that took the last stable offset returns at once, without the key."""
    ns, conn = f"r{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, KEYS_APPLICANTS, KEYS_DEAD_LETTERS)])
    accepted = normalise(Family.DOSSIER, person("TL-9", "Lò Thị Mai", "011188000222", "0911000222"), HDR,
                         keyring=keyring())
    assert isinstance(accepted, Accepted) and accepted.keys
    event = accepted.event
    await write_sealed(kafka_bootstrap, ns, keyring(), [person("TL-7", "Lò Văn Tư", "011188000111", "0911000111")])
    store = KeyStore(conn, ns, keyring(), client_id="tests-keys-refresh")  # it reads a first key record at start
    await store.start()
    writer = clients.transactional_producer(conn, transactional_id=f"tests-refresh-{uuid.uuid4().hex[:8]}",
                                            client_id="tests")
    await writer.start()
    ends_read = asyncio.Event()
    read_ends = AIOKafkaConsumer.end_offsets

    async def end_offsets(self: AIOKafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        ends = await read_ends(self, partitions)
        ends_read.set()
        return ends

    tail: asyncio.Task[None] | None = None
    try:
        await writer.begin_transaction()
        for topic, key, value in key_messages(list(accepted.keys), ns):
            await writer.send_and_wait(topic, value, key=key)

        async def refreshed() -> bool:
            """Whether the applicant opens the moment `refresh` returns."""
            await store.refresh(timeout_s=30)
            try:
                open_applicant(store.keyring, event.id, event.data.applicant)  # type: ignore[arg-type]
            except KeyUnknown:
                return False
            return True

        monkeypatch.setattr(AIOKafkaConsumer, "end_offsets", end_offsets)
        refresh = asyncio.create_task(refreshed())
        await asyncio.wait_for(ends_read.wait(), timeout=30)
        await writer.commit_transaction()
        await transactions_settled(kafka_bootstrap, [scoped(KEYS_APPLICANTS, ns).name])
        tail = asyncio.create_task(store.run())
        assert await asyncio.wait_for(refresh, timeout=60), "refresh returned without the committed key record"
    finally:
        await writer.stop()
        if tail is not None:
            tail.cancel()
            await asyncio.gather(tail, return_exceptions=True)
        await store.stop()


async def test_a_transaction_left_open_keeps_refresh_behind_never_erased(kafka_bootstrap: str, unique: str) -> None:
    """A transaction left open below the watermark (its writer killed mid-transaction, until the broker aborts it)
    hides every key committed after it: `refresh` raises `KeysBehind` (notify tries again later) rather than return
    on a partial view and let an applicant be counted erased (review of ADR 0037); once it ends, refresh returns."""
    ns, conn = f"s{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS)])
    accepted = normalise(Family.DOSSIER, person("TL-8", "Lò Văn Sáng", "011188000333", "0911000333"), HDR,
                         keyring=keyring())
    assert isinstance(accepted, Accepted)
    store = KeyStore(conn, ns, keyring(), client_id="tests-keys-refresh-open")
    await store.start()
    tail = asyncio.create_task(store.run())
    stuck = clients.transactional_producer(conn, transactional_id=f"tests-refresh-{uuid.uuid4().hex[:8]}",
                                           client_id="tests")
    await stuck.start()
    try:
        await stuck.begin_transaction()
        for topic, key, value in key_messages(list(accepted.keys), ns):
            await stuck.send_and_wait(topic, value, key=key)
        with pytest.raises(KeysBehind):
            await store.refresh(timeout_s=3)
        await stuck.abort_transaction()
        await store.refresh(timeout_s=30)
        with pytest.raises(KeyUnknown):  # aborted: never committed
            open_applicant(store.keyring, accepted.event.id, accepted.event.data.applicant)  # type: ignore[arg-type]
    finally:
        await stuck.stop()
        tail.cancel()
        await asyncio.gather(tail, return_exceptions=True)
        await store.stop()
