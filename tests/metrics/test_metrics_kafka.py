"""The metrics worker on the real broker: golden figures, restart with recovery, two workers and rebalances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import REGISTRY

from schemas import wire
from schemas.admin import commune_provinces
from schemas.envelope import Event
from schemas.events import FAMILY_OF_TYPE
from schemas.snapshot import CommuneIndicators, decode_snapshot
from schemas.topics import CANONICAL, METRICS_SNAPSHOTS, scoped
from services.common.admin import ensure_topics
from services.common.health import Health
from services.common.runtime import run_once, supervise
from services.common.settings import KafkaConnection
from services.metrics.exposition import render
from services.metrics.settings import MetricsSettings
from services.metrics.topics import Names
from services.metrics.worker import MetricsWorker
from tests.kafkatools import produce, read_all
from tests.metrics.golden import COMMUNES, NOW, event_set, expected, restricted, summed
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
WAIT_S = 60


async def publish(bootstrap: str, namespace: str, events: list[Event]) -> None:
    by_topic: dict[str, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = {}
    for e in events:
        rec = wire.encode(e)
        topic = scoped(CANONICAL[FAMILY_OF_TYPE[e.type]], namespace).name
        by_topic.setdefault(topic, []).append((rec.key, rec.value, rec.headers))
    for topic, records in by_topic.items():
        await produce(bootstrap, topic, records)


class Running:
    """A worker running in this event loop until `stop()`: one run, or runs restarted after Kafka errors."""

    def __init__(self, bootstrap: str, namespace: str, worker_id: str, state: Path, restart: bool) -> None:
        settings = MetricsSettings(bootstrap=bootstrap, namespace=namespace, worker_id=worker_id, state_dir=state,
                                   snapshot_interval_s=3600)
        self.worker = MetricsWorker(settings, clock=lambda: NOW)
        self.health = Health("metrics")
        self._stop = asyncio.Event()
        run = supervise if restart else run_once
        self.task = asyncio.create_task(run("metrics", self.worker.run, self._stop, self.health))

    def text(self) -> str:
        return render(self.worker.exported(), NOW)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def env(kafka_bootstrap: str, unique: str, tmp_path: Path) -> AsyncIterator[Callable[..., Running]]:
    namespace = f"t{unique}"
    await ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), Names(namespace).specs)
    started: list[Running] = []

    def start(worker_id: str, restart: bool = False) -> Running:
        r = Running(kafka_bootstrap, namespace, worker_id, tmp_path / "state", restart)
        started.append(r)
        return r

    start.namespace = namespace  # type: ignore[attr-defined]
    yield start
    for r in started:
        if not r.task.done():
            await r.stop()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def figures_of(*workers: Running, like: dict) -> dict:  # type: ignore[type-arg]
    return restricted(summed(*(w.text() for w in workers)), like)


def every_series(*texts: str) -> dict:  # type: ignore[type-arg]
    """Every non-zero commune_* series (counters, gauges, ratios, histograms) as Prometheus' sum() sees them."""
    return {k: round(v, 9) for k, v in summed(*texts).items() if v and k[0].startswith("commune_")}


async def test_golden_event_set_gives_exactly_the_expected_figures(kafka_bootstrap: str, env) -> None:  # type: ignore[no-untyped-def]
    """Shuffled and duplicated events yield exactly the independently computed figures; snapshots agree."""
    events = event_set()
    truth = expected(events)
    await publish(kafka_bootstrap, env.namespace, events)
    w = env("w1")
    await eventually_async(lambda: figures_of(w, like=truth) == truth, timeout=WAIT_S, what="golden figures")
    assert figures_of(w, like=truth) == truth
    assert w.worker.ownership.partitions and len(w.worker.ownership.owned) == 6
    assert await w.worker.publish_snapshots() == 8
    records = await read_all(kafka_bootstrap, scoped(METRICS_SNAPSHOTS, env.namespace).name, expect=8, idle=0.5)
    snaps: dict[str, CommuneIndicators] = {}
    for r in records:
        assert r.key is not None and r.value is not None
        snaps[r.key.decode()] = decode_snapshot(r.headers, r.value).data
    assert set(snaps) == set(COMMUNES)
    for commune, data in snaps.items():
        where = (("province", commune_provinces()[commune]), ("commune", commune))
        assert data.open == truth.get(("commune_dossiers_open", where), 0)
        assert data.overdue == truth.get(("commune_dossiers_overdue", where), 0)
        assert data.mobile_team_visits == 2 and data.broadcasts_completed == 2


def received_times(running: Running) -> dict[str, int]:
    """Each exported commune's last-received time (epoch ms)."""
    return {c: t.last_received_ms for p in running.worker.exported() for c, t in p.communes.items()}


async def test_restart_recovers_the_same_figures_from_the_changelog(kafka_bootstrap: str, env) -> None:  # type: ignore[no-untyped-def]
    """A new worker restores state from the changelog (before any new event) and then continues exactly; the
    communes' last-received times too (the changelog records carry them as their timestamps), not the restore's."""
    events = event_set(seed=11)
    half = len(events) // 2
    first, truth_first = events[:half], expected(events[:half])
    await publish(kafka_bootstrap, env.namespace, first)
    w1 = env("w1")
    await eventually_async(lambda: figures_of(w1, like=truth_first) == truth_first, timeout=WAIT_S, what="first half")
    received = received_times(w1)
    assert received and all(t > 0 for t in received.values())
    await w1.stop()
    w2 = env("w2")
    await eventually_async(lambda: len(w2.worker.ownership.owned) == 6, timeout=WAIT_S, what="assignment")
    assert figures_of(w2, like=truth_first) == truth_first  # restored, not re-read: offsets were committed
    assert received_times(w2) == received
    await publish(kafka_bootstrap, env.namespace, events[half:] + first[:20])  # the rest, plus redeliveries
    truth = expected(events)
    await eventually_async(lambda: figures_of(w2, like=truth) == truth, timeout=WAIT_S, what="all events after restart")


async def test_two_workers_sum_to_one_worker_also_across_rebalances(kafka_bootstrap: str, env) -> None:  # type: ignore[no-untyped-def]
    """Prometheus' sum over two workers equals the truth; after one leaves, the other alone still does."""
    events = event_set(seed=5)
    third = len(events) // 3
    await publish(kafka_bootstrap, env.namespace, events[:third])
    a = env("a")
    truth1 = expected(events[:third])
    await eventually_async(lambda: figures_of(a, like=truth1) == truth1, timeout=WAIT_S, what="one worker")
    b = env("b")
    await eventually_async(lambda: len(a.worker.ownership.owned) == 3 and len(b.worker.ownership.owned) == 3,
                           timeout=WAIT_S, what="rebalance to two workers")
    assert a.worker.ownership.owned.isdisjoint(b.worker.ownership.owned)
    communes_a = {c for p in a.worker.exported() for c in p.communes}
    communes_b = {c for p in b.worker.exported() for c in p.communes}
    assert communes_a.isdisjoint(communes_b)  # each exports only the partitions it owns
    assert figures_of(a, b, like=truth1) == truth1
    await publish(kafka_bootstrap, env.namespace, events[third:2 * third])
    truth2 = expected(events[:2 * third])
    await eventually_async(lambda: figures_of(a, b, like=truth2) == truth2, timeout=WAIT_S, what="two workers")
    two = every_series(a.text(), b.text())
    await b.stop()
    await eventually_async(lambda: len(a.worker.ownership.owned) == 6,
                           timeout=WAIT_S, what="rebalance back to one worker")
    assert figures_of(a, like=truth2) == truth2  # b's partitions restored from its changelog records
    assert every_series(a.text()) == two  # all series, incl. histograms, ratios, last-event times
    await publish(kafka_bootstrap, env.namespace, events[2 * third:])
    truth = expected(events)
    await eventually_async(lambda: figures_of(a, like=truth) == truth, timeout=WAIT_S, what="one worker again")


async def test_a_refused_commit_ends_the_run_and_the_restarted_run_restores(kafka_bootstrap: str, env,  # type: ignore[no-untyped-def]
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit Kafka refuses ends the run (counted), nothing is exported while it restarts, then figures are exact."""
    refused: list[dict[TopicPartition, int]] = []
    commit = AIOKafkaConsumer.commit

    async def refuse_once(self: AIOKafkaConsumer, offsets: dict[TopicPartition, int] | None = None) -> None:
        if not refused:
            refused.append(offsets or {})
            raise CommitFailedError("refused by the test")
        await commit(self, offsets)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", refuse_once)
    restarts = sample("commune_service_restarts_total", service="metrics", error="CommitFailedError")
    failures = sample("commune_task_failures_total", service="metrics", task="commit")
    events = event_set(seed=3)
    truth = expected(events)
    await publish(kafka_bootstrap, env.namespace, events)
    w = env("w1", restart=True)
    await eventually_async(lambda: bool(refused) and not w.worker.exported() and not w.health.ready, timeout=30,
                           interval=0.01, what="the run ending on the refused commit")
    assert sample("commune_task_failures_total", service="metrics", task="commit") == failures + 1
    await eventually_async(lambda: sample("commune_service_restarts_total", service="metrics",
                                          error="CommitFailedError") == restarts + 1,
                           timeout=WAIT_S, what="the restart")
    await eventually_async(lambda: figures_of(w, like=truth) == truth, timeout=WAIT_S, what="figures after the restart")
    assert w.health.ready and len(w.worker.ownership.owned) == 6
