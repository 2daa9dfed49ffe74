"""The deadline tracker: open dossiers per owned partition in RocksDB, a due-time index, a tick that fires alerts.

`python -m services.notify.deadline_worker` (started by `python -m services.notify` as a child process, `tracker.py`),
under the shared runtime: `/healthz` and `/readyz` on NOTIFY_DEADLINE_WEB_PORT. Input: the notify-internal `deadlines`
topic (dossier states from the notify worker, key = commune; also alert decisions written by the faust tracker this
replaced, applied once). Each owned partition's dossiers live in a RocksDB store restored from the tracker's changelog
when the partition is assigned (`deadline_store`); the store keeps them indexed by their next alert time
(`deadline_index`), so a tick touches only the dossiers whose alert is due.

Order of writes (ADR 0022): an alert is acknowledged on `commune.notify.alerts` before the changelog record that marks
it fired, and a batch's offsets are committed after its changelog records. A crash in between repeats an alert (same
deterministic id, stopped by notify's ledger, ADR 0007), never loses one; in steady state each alert is sent once.
Batches, ticks and rebalance callbacks take turns (one lock).

Nothing is written while the group may have moved on (ADR 0051): before a batch or a tick the loop waits, its lock free,
until the group has answered it as a member within `heard_limit_s`, so under a broker outage it waits, up to
`deadline_assignment.GIVE_UP_S` (then the run ends: `Unanswered`). Writes not acknowledged within
`NOTIFY_DEADLINE_ACK_TIMEOUT_S` end the run with `WritesUnacknowledged` (the producer is idempotent: aiokafka never
fails its sends while the broker is gone); the runtime restarts it, restoring from the changelog. Clients are closed
within `services.common.closing`'s limit, and `/readyz` is 503 while the broker does not answer (probe every second).
"""

from __future__ import annotations

from services.common import early_stop

if __name__ == "__main__":  # notify's child (`tracker`): a terminal's Ctrl-C or a group's SIGTERM while it starts
    early_stop.hold()  # is held and answered, as notify's own (review: it died of Python's default, unlogged)

import asyncio
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import RecordMetadata
from pydantic import ValidationError

from schemas.lookup import identifies_nobody
from schemas.notification import DeadlineAlert, DeadlineMessage
from schemas.topics import NOTIFY_ALERTS, NOTIFY_DEADLINES, Group, group_id, scoped
from services.common import clients, joining, runtime, stopping
from services.common.admin import ensure_topics
from services.common.closing import close_within, retrieved, start_within
from services.common.health import Health
from services.common.lag import LagGauge
from services.common.probe import broker_answers, probe_loop
from services.common.rebalance import RebalanceListener
from services.common.refused import settings_checked
from services.common.run_folder import RunFolder, remove_orphans
from services.common.runtime import Supervisor
from services.notify.deadline_assignment import Assignment, WritesUnacknowledged, answered_again
from services.notify.deadline_index import Change
from services.notify.deadline_settings import RUN_PREFIX, DeadlineSettings
from services.notify.deadline_store import OwnedPartitions, changelog_spec
from services.notify.metrics import SKIPPED
from services.notify.settings import NotifySettings
from services.notify.topics import Names
from services.notify.tracker import STOP_AT_EOF

log = structlog.get_logger("notify.deadlines")
SERVICE = "notify-deadlines"
Batch = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
Clock = Callable[[], datetime]


class DeadlineWorker:
    def __init__(self, settings: NotifySettings, own: DeadlineSettings, clock: Clock = lambda: datetime.now(UTC)):
        self.s, self.own, self.clock = settings, own, clock
        self.names = Names(settings.namespace)
        self.changelog = changelog_spec(settings.namespace)
        self.turn = asyncio.Lock()
        self.assignment = Assignment(NOTIFY_DEADLINES.partitions)
        remove_orphans(own.state_dir, RUN_PREFIX)  # stores of trackers killed before they could tidy up
        self.run_folder = RunFolder.claim(own.state_dir, RUN_PREFIX)  # held for the process's life: sweeps skip it
        self.store = OwnedPartitions(settings, self.changelog.name, self.run_folder.path, "notify-deadlines-restore")
        self.health: Health | None = None
        self._tracking: str | None = None
        """What `/readyz` says while assigned and restored; None while not (starting, rebalancing, stopping)."""
        self._waiting = "starting"
        self._broker_ok = True

    async def run(self, sup: Supervisor) -> None:
        """Consume states and tick until `stop`; a Kafka error ends the run (the runtime restarts it, restoring)."""
        ns = self.s.namespace
        await ensure_topics(self.s, [scoped(NOTIFY_DEADLINES, ns), scoped(NOTIFY_ALERTS, ns), self.changelog])
        self.health, self._tracking, self._broker_ok = sup.health, None, True
        producer = clients.producer(self.s, client_id="notify-deadlines")
        consumer = clients.consumer(self.s, client_id="notify-deadlines", group_id=group_id(Group.NOTIFY_DEADLINES, ns),
                                    session_timeout_ms=self.s.session_timeout_ms,
                                    heartbeat_interval_ms=self.s.heartbeat_interval_ms)
        try:
            # StartUnanswered (a KafkaError): the run restarts; a stop ends the wait for a producer id at once
            if await stopping.unless_stopped(start_within(SERVICE, "producer", producer), sup.stop) is stopping.STOPPED:
                return
            consumer.subscribe([self.names.deadlines], listener=_Rebalance(self, sup.fail))
            if not await joining.start_unless_stopped(SERVICE, consumer, sup.stop):
                return  # stopped during the group join (which waits for every member): not after it
            watches = [sup.spawn("broker-probe", probe_loop(partial(self._answers, consumer), self._broker)),
                       sup.spawn("consumer-lag", LagGauge(SERVICE).watch([consumer]))]
            try:
                await self._loop(sup.stop, consumer, producer)
            finally:
                for watch in watches:  # they ask the consumer: not while it stops
                    watch.cancel()
        finally:
            self._report(None, "stopping")
            self.assignment.revoked()
            await close_within(SERVICE, "consumer", partial(joining.stop_member, consumer))  # mid-join: leaves at once
            await close_within(SERVICE, "producer", producer.stop)
            self.store.close_all()

    async def _answers(self, consumer: AIOKafkaConsumer) -> bool:
        owned = [TopicPartition(self.names.deadlines, p) for p in sorted(self.assignment.owned)]
        return await broker_answers(consumer, owned or [TopicPartition(self.names.deadlines, 0)])

    def _broker(self, ok: bool) -> None:
        if ok != self._broker_ok:
            self._broker_ok = ok
            self._report(self._tracking, self._waiting)

    def _report(self, tracking: str | None, waiting: str) -> None:
        """`/readyz`: ready while tracking restored partitions and the broker answers; `waiting` says why not."""
        self._tracking, self._waiting = tracking, waiting
        if self.health is None:
            return
        if tracking is None:
            self.health.set_ready(False, waiting)
        elif not self._broker_ok:
            self.health.set_ready(False, "broker unreachable")
        else:
            self.health.set_ready(True, tracking)

    async def _loop(self, stop: asyncio.Event, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        next_tick = time.monotonic()
        while not stop.is_set():
            wait_s = min(0.5, max(0.0, next_tick - time.monotonic()))
            # a fetch waits, whatever its timeout, for as long as the group rebalances: not past the stop (audit)
            batch = await stopping.unless_stopped(consumer.getmany(
                timeout_ms=int(wait_s * 1000), max_records=self.own.batch_max_records), stop)
            if not isinstance(batch, dict):
                break  # stopped
            await self._take_assignment()  # then asked: a restore can last long enough for the group to move on
            if (kept := await answered_again(consumer, self.assignment, self.s.heard_limit_s(), stop, batch)) is None:
                continue  # the assignment moved on (its records come again) or a stop came: nothing written
            async with self.turn:
                batch = {tp: records for tp, records in kept.items() if tp.partition in self.assignment.owned}
                if batch:
                    await self.apply(batch, producer)
                    await self._commit(consumer, {tp: records[-1].offset + 1 for tp, records in batch.items()})
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.s.deadline_tick_s
                    await self.tick(producer)

    async def _take_assignment(self) -> None:
        """Restore the partitions the last assignment brought: in the loop, outside the lock, not in a rebalance
        callback. aiokafka sends no heartbeat until the assignment callback returns, and a revocation waits for
        the lock: a slow restore in either got the member evicted while it went on ticking (two owners, alerts
        fired twice). A restore overtaken by a revocation is not taken."""
        todo = self.assignment.pending()
        if todo is None:
            return
        await self.store.assign(todo.wanted, todo.stale)
        if self.assignment.taken(todo):
            log.info("deadline.tracking", partitions=sorted(todo.wanted))  # each assignment, restored or kept
            self._report(f"tracking {len(todo.wanted)} partitions", "tracking")

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit; a commit refused because the group moved on is left to the next owner, which redoes the
        records (states merge again, alert flags kept: nothing fires twice)."""
        try:
            async with asyncio.timeout(self.own.ack_timeout_s):
                await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError):  # refused, or no assignment at this instant (rebalancing)
            log.warning("deadline.commit_refused", partitions=sorted(tp.partition for tp in offsets))
        except TimeoutError:  # aiokafka retries a commit for as long as the broker is gone
            raise WritesUnacknowledged(f"commit not answered within {self.own.ack_timeout_s:g} s") from None
        else:
            if self.health is not None:
                self.health.committed()

    async def apply(self, batch: Batch, producer: AIOKafkaProducer) -> None:
        """Record each state (and old-style alert decision) in its partition's store; write alerts, then changes."""
        alerts: list[DeadlineAlert] = []
        changes: list[tuple[int, Change]] = []
        now = self.clock()
        for tp, records in batch.items():
            part = self.store.parts[tp.partition]  # assigned partitions are restored before they are fetched
            for rec in records:
                msg = _decode(rec)
                if msg is not None and msg.dossier is not None:
                    if (state := part.record_state(msg.dossier, now)) is not None:  # None: from an older event
                        changes.append((tp.partition, state))
                elif msg is not None and msg.alert is not None and (change := part.record_alert(msg.alert)):
                    alerts.append(msg.alert)
                    changes.append((tp.partition, change))
        await self._write(producer, alerts, changes)

    async def tick(self, producer: AIOKafkaProducer) -> int:
        """Fire every alert due now in the owned partitions; returns how many."""
        now = self.clock()
        fired = {p: self.store.parts[p].fire(now) for p in sorted(self.assignment.owned)}
        alerts = [a for out in fired.values() for a, _ in out if a is not None]  # None: a closed dossier forgotten
        await self._write(producer, alerts, [(p, change) for p, out in fired.items() for _, change in out])
        for a in alerts:  # its id only if it identifies nobody: it holds its dossier's code (privacy audit)
            log.info("deadline.alert", kind=a.kind.value, commune=a.commune,
                     alert=a.id if identifies_nobody(a.id) else None)
        return len(alerts)

    async def _write(self, producer: AIOKafkaProducer, alerts: list[DeadlineAlert],
                     changes: list[tuple[int, Change]]) -> None:
        """Alerts acknowledged first, then the changelog records (a crash in between repeats, never loses)."""
        sent = await self._taken(producer, [(self.names.alerts, a.model_dump_json().encode(), a.commune.encode(), None)
                                            for a in alerts], "alerts")
        await self._acknowledged(sent, "alerts")
        logged = await self._taken(producer, [(self.changelog.name, value, key, p) for p, (key, value) in changes],
                                   "changelog records")
        for meta in await self._acknowledged(logged, "changelog records"):
            self.store.written(meta.partition, meta.offset)

    async def _taken(self, producer: AIOKafkaProducer, records: list[tuple[str, bytes | None, bytes, int | None]],
                     what: str) -> list[asyncio.Future[RecordMetadata]]:
        """The records handed to the producer, or `WritesUnacknowledged` if that takes over `ack_timeout_s`: `send`
        waits for the topic's metadata, up to the client's request timeout (40 s) while the broker is gone, so the
        run went on that long past its bound (review of the tests' times)."""
        sent: list[asyncio.Future[RecordMetadata]] = []
        try:
            async with asyncio.timeout(self.own.ack_timeout_s):
                for topic, value, key, partition in records:
                    sent.append(await producer.send(topic, value, key=key, partition=partition))
        except TimeoutError:
            for future in sent:  # their outcome is read, never left unobserved
                future.add_done_callback(retrieved)
            raise WritesUnacknowledged(f"{len(records) - len(sent)} of {len(records)} {what} not taken by the "
                                       f"producer within {self.own.ack_timeout_s:g} s (no metadata)") from None
        return sent

    async def _acknowledged(self, sent: list[asyncio.Future[RecordMetadata]], what: str) -> list[RecordMetadata]:
        """The sends' metadata once all are acknowledged (a refused one raises its error); `WritesUnacknowledged` if
        any is not within `ack_timeout_s` (it may still be sent: its outcome is read, never left unobserved)."""
        if not sent:
            return []
        _, pending = await asyncio.wait(sent, timeout=self.own.ack_timeout_s)
        if pending:
            for future in pending:
                future.add_done_callback(retrieved)
            raise WritesUnacknowledged(f"{len(pending)} of {len(sent)} {what} not acknowledged within "
                                       f"{self.own.ack_timeout_s:g} s")
        return [future.result() for future in sent]

    async def revoked(self) -> None:
        async with self.turn:  # the batch or tick in flight is written and committed first (or fails in time)
            self.assignment.revoked()
            self._report(None, "rebalancing")


class _Rebalance(RebalanceListener):
    def __init__(self, worker: DeadlineWorker, fail: Callable[[BaseException], None]) -> None:
        super().__init__(fail)
        self.worker = worker

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self.worker.revoked()

    async def assigned(self, partitions: set[TopicPartition]) -> None:  # at once: the loop restores them
        self.worker.assignment.assigned({tp.partition for tp in partitions})


def _decode(rec: ConsumerRecord[bytes, bytes]) -> DeadlineMessage | None:
    try:
        return DeadlineMessage.model_validate_json(rec.value or b"")
    except ValidationError:  # counted too: a log line alone was seen by no alert (audit)
        SKIPPED.labels("deadline_message_invalid").inc()
        log.warning("deadline.invalid_record", partition=rec.partition, offset=rec.offset)
        return None


def clock_of(own: DeadlineSettings) -> Clock:
    """The tracker's clock: the wall clock, `clock_ahead_s` ahead of it (0 in production)."""
    ahead = timedelta(seconds=own.clock_ahead_s)
    return lambda: datetime.now(UTC) + ahead


def main() -> None:
    with settings_checked("notify-deadlines"):
        settings, deadlines = NotifySettings(), DeadlineSettings()
    if deadlines.clock_ahead_s:
        log.warning("deadline.clock_ahead", seconds=deadlines.clock_ahead_s)
    worker = DeadlineWorker(settings, deadlines, clock_of(deadlines))
    # as notify's child (`tracker.TrackerProcess`), it stops when notify closes its standard input
    runtime.main(SERVICE, settings.model_copy(update={"http_port": settings.deadline_web_port}),
                 worker.run, stop_at_eof=sys.stdin.fileno() if STOP_AT_EOF in sys.argv[1:] else None)


if __name__ == "__main__":
    main()
