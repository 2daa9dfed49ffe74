"""metrics under load for the chaos rows: the golden event set (out of order, a quarter re-sent) sent at a steady
rate; the scraped figures must equal the independent oracle of `tests/metrics/golden.py`.

Figures are idempotent merges, so order does not apply; a series below the oracle counts as lost, one above it as
duplicated (an event counted twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas import wire
from schemas.envelope import Event
from schemas.events import FAMILY_OF_TYPE
from schemas.topics import CANONICAL, Group, TransactionalId, group_id, scoped, transactional_id
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.metrics.topics import Names
from tests.chaos.injections import Coordinated
from tests.chaos.scenario import Counts, Stage, committed_since
from tests.cluster.tools import Feeder, Sent, scrape
from tests.faults import REPLICAS, Worker
from tests.metrics.golden import Sample, event_set, expected, restricted, summed
from tests.waiting import eventually_async

PARTITIONS = 6
FAST_GROUP = {"METRICS_SESSION_TIMEOUT_MS": "6000", "METRICS_HEARTBEAT_INTERVAL_MS": "2000"}
"""The broker's smallest session timeout, as in tests/metrics/test_metrics_pause.py: evicted after 6 s paused."""
COORDINATED = Coordinated(group=lambda namespace: group_id(Group.METRICS, namespace),
                          transactional_id=lambda namespace: transactional_id(TransactionalId.METRICS, namespace, "p0"))
"""The group's id and partition 0's changelog writer (one transactional id per partition, ADR 0016: the other five
are coordinated by whichever nodes lead their `__transaction_state` partitions)."""


@dataclass
class MetricsLoad:
    """The golden event set (seed `seed`, ~480 events over 8 communes) sent at `per_second` to `workers` metrics
    workers (settings `env`); mid-stream once they applied `mid_stream` events."""

    seed: int = 11
    per_second: float = 40
    mid_stream: int = 80
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    feeding: asyncio.Task[object] | None = None
    feeder: Feeder | None = None
    got: dict[Sample, float] = field(default_factory=dict)

    async def setup(self, stage: Stage) -> None:
        await ensure_topics(KafkaConnection(bootstrap=stage.bootstrap), Names(stage.namespace).specs,
                            replication_factor=REPLICAS if stage.cluster else None)
        self.events = event_set(seed=self.seed)
        sent: list[Sent] = []
        for e in self.events:
            rec = wire.encode(e)
            sent.append((scoped(CANONICAL[FAMILY_OF_TYPE[e.type]], stage.namespace).name, rec.key, rec.value,
                         rec.headers))
        for i in range(self.workers):
            self.start_worker(stage, f"metrics-{i}")
        await eventually_async(lambda: self.owned(stage.live()), timeout=90, interval=0.2, what="metrics assigned")
        self.feeder = Feeder(stage.bootstrap, sent, self.per_second)
        self.feeding = asyncio.create_task(self.feeder.run())
        await eventually_async(lambda: self._applied(stage), timeout=60, interval=0.05, what="metrics applying")
        assert not self.feeding.done(), "the fault must land mid-stream: send for longer"

    async def _applied(self, stage: Stage) -> bool:
        applied = await asyncio.gather(*(w.metric("commune_metrics_events_total") for w in stage.live()))
        return sum(applied) >= self.mid_stream

    def acked(self) -> int:
        return 0 if self.feeder is None else self.feeder.acked

    def start_worker(self, stage: Stage, name: str) -> Worker:
        env = {"KAFKA_BOOTSTRAP": stage.bootstrap_for(name), "METRICS_NAMESPACE": stage.namespace,
               "METRICS_STATE_DIR": str(stage.workdir / f"state-{name}"), "METRICS_BATCH_MAX_RECORDS": "50",
               "METRICS_WORKER_ID": name, **self.env}
        worker = Worker.start("services.metrics", name, env, "METRICS_HTTP_PORT", stage.workdir)
        stage.workers.append(worker)
        return worker

    async def owned(self, workers: Sequence[Worker]) -> bool:
        counts = await asyncio.gather(*(w.metric("commune_metrics_owned_partitions") for w in workers))
        return bool(counts) and sum(counts) == PARTITIONS and min(counts) >= 1

    async def progressed(self, stage: Stage, since: float) -> bool:
        return await committed_since(stage.live(), since)

    async def settle(self, stage: Stage) -> None:
        assert self.feeding is not None
        await self.feeding
        truth = expected(self.events, now=time.time())  # the service decides overdue against the wall clock

        async def exact() -> bool:
            texts = await asyncio.gather(*(asyncio.to_thread(scrape, w.port) for w in stage.live()))
            self.got = restricted(summed(*texts), truth)
            assert self.got == truth, "figures differ from the oracle"
            return True

        with contextlib.suppress(AssertionError):  # how far off, series by series, is the row's accounting
            await eventually_async(exact, timeout=60, interval=0.3, what="exact figures")

    async def account(self, stage: Stage) -> Counts:
        truth = expected(self.events, now=time.time())
        below = sum(1 for k, v in truth.items() if self.got.get(k, 0.0) < v)
        above = sum(1 for k, v in self.got.items() if v > truth.get(k, 0.0))
        return Counts(len(self.events), below, above, None,
                      note="; ".join(n for n in (f"series vs oracle: {len(truth)}", off(self.got, truth)) if n))

    async def close(self) -> None:
        if self.feeding is not None and not self.feeding.done():
            self.feeding.cancel()


def off(got: dict[Sample, float], truth: dict[Sample, float], shown: int = 3) -> str:
    """The first `shown` series whose scraped value is not the oracle's, each with both (a row's logs may be gone when
    its note is read: CI's (0, 120) was the commune series of an earlier row's events, 3 for each of 40 communes)."""
    differ = sorted(k for k in got.keys() | truth.keys() if got.get(k, 0.0) != truth.get(k, 0.0))
    if not differ:
        return ""
    lines = [f"{name}{{{','.join(f'{k}={v}' for k, v in labels)}}} {got.get((name, labels), 0.0):g} (oracle "
             f"{truth.get((name, labels), 0.0):g})" for name, labels in differ[:shown]]
    return f"first off: {', '.join(lines)}" + (f" and {len(differ) - shown} more" if len(differ) > shown else "")
