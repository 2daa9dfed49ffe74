"""intake under load for the chaos rows: unique raw dossier records sent at a steady rate, accounted read_committed.

The records and the accounting are those of `tests/intake/accounting.py`: keyed dossiers of three events, unkeyed
single-event dossiers (re-routed by intake), malformed records with and without a key. Every record must end
canonical or dead-lettered exactly once, and each dossier's canonical events keep their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.events import Family
from schemas.topics import (
    CANONICAL,
    DLQ_INTAKE,
    INTAKE_DEDUP,
    RAW,
    Group,
    TransactionalId,
    group_id,
    scoped,
    transactional_id,
)
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests.chaos.injections import Coordinated
from tests.chaos.scenario import Counts, Stage, committed_since
from tests.faults import REPLICAS, Worker
from tests.intake.accounting import Sent, audit, feed, stream
from tests.waiting import eventually_async

TASKS = 6
"""Raw partition numbers: each worker owns some of them (`commune_intake_tasks`)."""
FAST_GROUP = {"INTAKE_SESSION_TIMEOUT_MS": "6000", "INTAKE_HEARTBEAT_INTERVAL_MS": "1000"}
"""The broker's smallest session timeout (group.min.session.timeout.ms), as tests/intake/test_intake_fencing.py:
a worker that stops heartbeating is evicted after 6 s, so every row recovers in seconds."""

FIRST_WORKER = "intake-0"
COORDINATED = Coordinated(group=lambda namespace: group_id(Group.INTAKE, namespace),
                          transactional_id=lambda namespace: transactional_id(TransactionalId.INTAKE, namespace,
                                                                              FIRST_WORKER))
"""The group's id and the first worker's transactional id (one producer per worker, ADR 0017, named by its
INTAKE_WORKER_ID)."""


@dataclass
class IntakeLoad:
    """`workers` intake workers fed `rate` records/s for `seconds`; the row's fault lands while records still flow."""

    workers: int = 1
    rate: int = 300
    seconds: float = 30
    records: list[Sent] = field(default_factory=list)
    feeding: asyncio.Task[None] | None = None
    topics: dict[str, str] = field(default_factory=dict)
    joined: int = 0

    async def setup(self, stage: Stage) -> None:
        specs = [*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP]
        replicas = REPLICAS if stage.cluster else None
        await ensure_topics(KafkaConnection(bootstrap=stage.bootstrap), [scoped(s, stage.namespace) for s in specs],
                            replication_factor=replicas)
        self.topics = {s.name: scoped(s, stage.namespace).name for s in specs}
        self.records = stream(int(self.rate * self.seconds))
        raw = self.topics[RAW[Family.DOSSIER].name]
        self.feeding = asyncio.create_task(feed(stage.bootstrap, raw, self.records, self.rate))
        for _ in range(self.workers):
            self.start_worker(stage, f"intake-{self.joined}")  # the first is FIRST_WORKER
        await eventually_async(lambda: self.owned(stage.live()), timeout=90, interval=0.2,
                               what=f"{self.workers} intake workers sharing the tasks")
        await eventually_async(lambda: self._committed(stage), timeout=60, interval=0.1, what="intake committing")
        assert not self.feeding.done(), "the fault must land mid-stream: send for longer"

    async def _committed(self, stage: Stage) -> bool:
        live = stage.live()
        return bool(live) and all(await asyncio.gather(*(w.last_commit() for w in live)))

    def start_worker(self, stage: Stage, name: str) -> Worker:
        env = {"KAFKA_BOOTSTRAP": stage.bootstrap_for(name), "INTAKE_NAMESPACE": stage.namespace,
               "INTAKE_WORKER_ID": name, **FAST_GROUP}
        worker = Worker.start("services.intake", name, env, "INTAKE_HTTP_PORT", stage.workdir)
        stage.workers.append(worker)
        self.joined += 1
        return worker

    async def owned(self, workers: Sequence[Worker]) -> bool:
        counts = await asyncio.gather(*(w.metric("commune_intake_tasks") for w in workers))
        return bool(counts) and sum(counts) == TASKS and min(counts) >= 1

    async def progressed(self, stage: Stage, since: float) -> bool:
        return await committed_since(stage.live(), since)

    async def settle(self, stage: Stage) -> None:
        assert self.feeding is not None
        await self.feeding  # the fault was lifted while records still flowed; `account` waits for the outputs
        await eventually_async(lambda: self.owned(stage.live()), timeout=90, interval=0.2,
                               what="the live workers sharing every task")

    async def account(self, stage: Stage) -> Counts:
        result = await audit(stage.bootstrap, self.topics, self.records)
        return Counts(len(self.records), len(result.lost), len(result.duplicated), len(result.out_of_order),
                      note=f"{result.rerouted} unkeyed re-routed")

    async def close(self) -> None:
        if self.feeding is not None and not self.feeding.done():
            self.feeding.cancel()
