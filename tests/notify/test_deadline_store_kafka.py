"""The deadline tracker's partition stores on a real broker: a store another tracker wrote past is not kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.notification import TrackedDossier
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.notify.deadline_index import key_of
from services.notify.deadline_store import OwnedPartitions, changelog_spec

pytestmark = pytest.mark.kafka
DUE = datetime(2026, 12, 10, 10, 0, tzinfo=UTC)


def dossier(code: str) -> TrackedDossier:
    return TrackedDossier(dossier_code=code, commune="02269", province="08", procedure_code="1.001234",
                          due_at=DUE + timedelta(hours=1), is_open=True)


@asynccontextmanager
async def tracker_store(bootstrap: str, unique: str,
                        tmp_path: Path) -> AsyncIterator[tuple[OwnedPartitions, AIOKafkaProducer, str]]:
    """A tracker's partition stores over a changelog of its own, and a producer writing there as another owner."""
    conn = KafkaConnection(bootstrap=bootstrap)
    spec = changelog_spec(f"d{unique}")
    await ensure_topics(conn, [spec])
    store = OwnedPartitions(conn, spec.name, tmp_path / "a", client_id="test-deadline-store")
    producer = clients.producer(conn, client_id="test-deadline-store")
    await producer.start()
    try:
        yield store, producer, spec.name
    finally:
        await producer.stop()
        store.close_all()


async def test_a_kept_store_that_another_tracker_wrote_past_is_restored_again(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """Evicted and given the partition back without an assignment that left it out, a tracker restores it when
    its changelog holds writes not its own (the other owner's new dossier is then known); a store nobody else
    wrote to is kept as it is."""
    async with tracker_store(kafka_bootstrap, unique, tmp_path) as (store, producer, topic):
        await store.assign({0})
        key, value = store.parts[0].record_state(dossier("MINE"))
        meta = await producer.send_and_wait(topic, value, key=key, partition=0)
        store.written(0, meta.offset)
        await store.assign({0})
        assert store.restored == {0: 0}, "only its own write since its restore: the store is kept"

        key, value = (key_of("02269", "THEIRS"), dossier("THEIRS").model_dump_json().encode())
        await producer.send_and_wait(topic, value, key=key, partition=0)  # the other owner, meanwhile
        await store.assign({0})
        assert store.restored == {0: 2}, "the store was restored again"
        assert store.parts[0].get(key_of("02269", "THEIRS")) is not None
        assert store.parts[0].get(key_of("02269", "MINE")) is not None


async def test_a_store_whose_own_late_write_landed_after_another_trackers_is_restored_again(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """Paused past its session, a tracker's own write lands after the other owner's: its store reaches the
    changelog's end by that write, yet lacks the other owner's dossier. Given the partition back, it restores it."""
    async with tracker_store(kafka_bootstrap, unique, tmp_path) as (store, producer, topic):
        await store.assign({0})
        theirs = key_of("02269", "THEIRS")
        await producer.send_and_wait(topic, dossier("THEIRS").model_dump_json().encode(), key=theirs, partition=0)
        key, value = store.parts[0].record_state(dossier("MINE"))
        meta = await producer.send_and_wait(topic, value, key=key, partition=0)  # the paused tracker's, late
        store.written(0, meta.offset)
        await store.assign({0})
        assert store.restored == {0: 2}, "the store was restored again"
        assert store.parts[0].get(theirs) is not None
