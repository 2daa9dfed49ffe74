"""metrics' changelog fence on the real broker: a worker that lost a partition cannot write its stale state after the
new owner restored it (ADR 0016). The zombie is an in-process worker whose partition another worker took over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from schemas import wire
from schemas.envelope import Event
from schemas.events import Family
from schemas.topics import CANONICAL, scoped
from services.common.admin import ensure_topics
from services.common.partitioner import partition_for
from services.common.settings import KafkaConnection
from services.metrics.exposition import render
from services.metrics.ownership import Ownership
from services.metrics.settings import MetricsSettings
from services.metrics.topics import Names
from services.metrics.worker import MetricsWorker
from services.metrics.writers import is_fenced
from tests.kafkatools import read_all
from tests.metrics.events import dossier
from tests.metrics.golden import NOW, parse

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]
COMMUNE = "02269"
PARTITION = partition_for(COMMUNE.encode(), 6)
RECEIVED = dossier(COMMUNE, "D-1", 2, "e1", 1)
PROCESSING = dossier(COMMUNE, "D-1", 4, "e2", 2)
RETURNED = dossier(COMMUNE, "D-1", 10, "e3", 30, end_hours=30)


Fetch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


def batch(namespace: str, first_offset: int, *events: Event) -> Fetch:
    """`events` as one fetch of the dossier topic's partition, from `first_offset` on."""
    tp = TopicPartition(scoped(CANONICAL[Family.DOSSIER], namespace).name, PARTITION)
    records = []
    for i, event in enumerate(events):
        rec = wire.encode(event)
        records.append(ConsumerRecord(tp.topic, tp.partition, first_offset + i, 0, 0, rec.key, rec.value, None,
                                      len(rec.key), len(rec.value), rec.headers))
    return {tp: records}


Owner = Callable[[str], Ownership]


@pytest.fixture
async def owner(kafka_bootstrap: str, unique: str, tmp_path: Path) -> AsyncIterator[Owner]:
    """Partition states of workers of one group (in this process), closed at the end."""
    namespace = f"f{unique}"
    await ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), Names(namespace).specs)
    made: list[Ownership] = []

    def make(worker_id: str) -> Ownership:
        settings = MetricsSettings(bootstrap=kafka_bootstrap, namespace=namespace, worker_id=worker_id,
                                   state_dir=tmp_path, transaction_timeout_ms=20_000)
        made.append(MetricsWorker(settings).ownership)
        return made[-1]

    make.namespace = namespace  # type: ignore[attr-defined]
    yield make
    for ownership in made:
        await ownership.close_all()


def figures(ownership: Ownership) -> dict:  # type: ignore[type-arg]
    return parse(render(ownership.exported(), NOW))


async def test_a_worker_that_lost_its_partition_cannot_overwrite_the_new_owners_state(owner) -> None:  # type: ignore[no-untyped-def]
    """The zombie's late changelog write is fenced; a fresh restore equals the new owner's figures, not the zombie's."""
    ns = owner.namespace
    tps = set(batch(ns, 0))
    zombie, successor = owner("zombie"), owner("successor")
    await zombie.assign(tps)
    await zombie.write(zombie.apply(batch(ns, 0, RECEIVED), NOW)[0])
    await successor.assign(tps)  # the group moved the partition while the zombie was frozen: the fence
    await successor.write(successor.apply(batch(ns, 1, PROCESSING, RETURNED), NOW)[0])

    stale, _ = zombie.apply(batch(ns, 1, PROCESSING), NOW)  # woken: its prefetched record, applied to its old state
    assert stale[PARTITION], "the zombie has a changed state to write"
    with pytest.raises(Exception) as refused:
        await zombie.write(stale)
    assert is_fenced(refused.value), f"refused with {type(refused.value).__name__}"

    fresh = owner("fresh")
    await fresh.assign(tps)
    assert figures(fresh) == figures(successor)
    where = (("province", RECEIVED.province), ("commune", COMMUNE))
    assert figures(fresh)[("commune_dossiers_open", where)] == 0  # the return survived the zombie's write


async def test_a_worker_that_lost_its_partition_cannot_publish_stale_snapshots(owner, kafka_bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    """Snapshots go through the same fenced writer: after the fence, the old owner's snapshot never commits."""
    ns = owner.namespace
    tps = set(batch(ns, 0))
    zombie, successor = owner("zombie"), owner("successor")
    await zombie.assign(tps)
    await successor.assign(tps)
    record = wire.encode(RECEIVED)  # any event will do: only whether it is committed matters
    with pytest.raises(Exception) as refused:
        await zombie.writers[PARTITION].write_snapshots([record])
    assert is_fenced(refused.value), f"refused with {type(refused.value).__name__}"
    await successor.writers[PARTITION].write_snapshots([record])
    committed = await read_all(kafka_bootstrap, Names(ns).snapshots, expect=1, idle=1.0, timeout=20)
    assert len(committed) == 1


async def test_the_snapshot_loop_of_a_fenced_worker_ends_its_run(owner, kafka_bootstrap: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A fenced writer met by the snapshot loop ends the run (the partition is another worker's now), where a
    Kafka error that only skips one snapshot is retried; before, the zombie kept exporting and counting failures."""
    ns = owner.namespace
    tps = set(batch(ns, 0))
    settings = MetricsSettings(bootstrap=kafka_bootstrap, namespace=ns, worker_id="zombie", state_dir=tmp_path / "z",
                               transaction_timeout_ms=20_000, snapshot_interval_s=0.2)
    zombie = MetricsWorker(settings)
    try:
        await zombie.ownership.assign(tps)
        zombie.ownership.apply(batch(ns, 0, RECEIVED), NOW)  # a commune to snapshot
        await owner("successor").assign(tps)  # the fence
        with pytest.raises(Exception) as ended:
            await asyncio.wait_for(zombie._snapshot_loop(asyncio.Event()), timeout=30)
        assert is_fenced(ended.value), f"ended with {type(ended.value).__name__}"
    finally:
        await zombie.ownership.close_all()
