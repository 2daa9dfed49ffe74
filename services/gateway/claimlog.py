"""The claims protocol of `services.gateway.claims` on Kafka: durable and shared by every gateway instance.

Claims go to `commune.gateway.claims` (compacted per record key, see `services.gateway.claims`), into the
partition of their claim key (murmur2 over the topic's real partition count), from an idempotent producer,
acks=all. One reader per instance follows every partition from the
beginning (read_committed: an answer sealed in a request's transaction counts only once it committed) and
folds each record into its table. `claim` writes the claim, then waits until the reader has passed that
record's offset in its partition: every instance has then seen the same records before it, in the same
order, and `fold` names the same winner everywhere. The table starts from the topic at start (a restarted
gateway keeps its keys) and drops keys whose `until` has passed; it keeps answers' whole bodies within a
byte budget (`ClaimTable`): a body dropped from memory is still on the topic, and the key stays answered.
While the broker does not answer (probed every second, `services.common.probe`) the claims are not ready:
`/readyz` says 503 and a claim is refused at once (503) instead of waiting on a write that cannot be sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.topics import TopicSpec
from schemas.wire import KafkaRecord
from services.common import clients
from services.common.admin import ensure_topics
from services.common.closing import close_within, start_within
from services.common.health import Health
from services.common.partitioner import partition_for
from services.common.probe import PROBE_EVERY_S, broker_answers
from services.common.settings import KafkaConnection
from services.common.streak import Streak
from services.gateway.claims import (
    DEFAULT_ANSWER_BYTES,
    Answer,
    ClaimRecord,
    ClaimTable,
    Records,
    Ticket,
    Verdict,
    new_ticket,
    prune_due,
    verdict,
)
from services.gateway.publisher import BROKER_ERRORS, BrokerUnavailable
from services.privacy import required_topics

log = structlog.get_logger("gateway")
PROBES_FAILED = 2
"""Probes in a row the broker did not answer before the gateway says it is unreachable."""
SERVICE = "gateway"
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 15.0


class KafkaClaims:
    def __init__(self, conn: KafkaConnection, spec: TopicSpec, *, client_id: str, timeout_s: float,
                 clock: Callable[[], float] = time.time, answer_bytes: int = DEFAULT_ANSWER_BYTES,
                 checked: Sequence[TopicSpec] = ()) -> None:
        """`checked`: topics whose configs each run checks too, never creating them (`required_topics`)."""
        self.conn, self.spec, self.topic, self.checked = conn, spec, spec.name, checked
        self.client_id, self.timeout_s, self.clock = client_id, timeout_s, clock
        self.answer_bytes = answer_bytes
        self.table = ClaimTable(answer_bytes)
        self._positions: dict[int, int] = {}
        self._moved = asyncio.Condition()
        self._ready = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._partitions = 0
        self._answering = True
        """Whether the broker answered the reader's last probe."""

    def waiting(self) -> str | None:
        """Why claims cannot be made now (`/readyz`'s detail), or None once the table holds every claim that was on
        the topic when the reader started and the broker answers."""
        if not self._answering:
            return "broker unreachable"
        return None if self._ready.is_set() else "restoring Idempotency-Keys"

    async def run(self, health: Health) -> None:
        """The reader (a supervised task): restore, then follow the topic until cancelled. A broker that does not
        answer is waited for (not ready meanwhile, claims answer 503) without ending the run: the HTTP server
        keeps serving /readyz and the broker watch. Reader runs that keep failing without progress (a claims
        topic this principal may not read; not an outage, where no broker answers) turn `/healthz` 503 (`streak`)."""
        delay, streak = FIRST_BACKOFF_S, Streak(health, "claims reader")
        while True:
            streak.started()
            try:
                await self._run_once()
            except BROKER_ERRORS as exc:
                log.warning("gateway.claims_unavailable", error=type(exc).__name__, retry_in_s=delay)
                await streak.failed_unless_outage(type(exc).__name__)
            finally:
                streak.ended()
            delay = FIRST_BACKOFF_S if self._ready.is_set() else min(delay * 2, MAX_BACKOFF_S)
            self._ready.clear()
            await asyncio.sleep(delay)

    async def _run_once(self) -> None:
        self.table, self._positions = ClaimTable(self.answer_bytes), {}  # every run reads the topic afresh
        await ensure_topics(self.conn, [self.spec])
        await required_topics.configs_checked(self.conn, self.checked)  # the erasures' topics, for its erasures
        self._producer = clients.producer(self.conn, client_id=f"{self.client_id}-claims", linger_ms=0,
                                          request_timeout_ms=int(self.timeout_s * 1000))
        reader = clients.consumer(self.conn, client_id=f"{self.client_id}-claims", fetch_max_wait_ms=50)
        try:
            await start_within(SERVICE, "claims-producer", self._producer)  # StartUnanswered: the run ends, again
            await reader.start()
            await self._follow(reader, self._producer)
        finally:  # a failed or late stop is logged, not raised: the broker is usually why the follower ends
            producer, self._producer = self._producer, None
            self._ready.clear()
            await close_within(SERVICE, "claims-reader", reader.stop)
            await close_within(SERVICE, "claims-producer", producer.stop)

    async def _follow(self, reader: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        partitions = sorted(await producer.partitions_for(self.topic))
        self._partitions = len(partitions)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        pruned = self.clock()
        probe, probed = partial(broker_answers, reader, tps), time.monotonic()
        self._answering, failed = True, 0
        while True:
            if time.monotonic() - probed >= PROBE_EVERY_S:  # in the loop: nothing is read while it does not answer
                failed = 0 if await probe() else failed + 1
                # unreachable after PROBES_FAILED in a row: one slow answer (a leader election, a loaded machine) would
                # take every instance out of service and refuse every claim at once
                self._answering, probed = failed < PROBES_FAILED, time.monotonic()
            batch = await reader.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for rec in records:
                    self._apply(rec.value)
            # read before taking `_moved` (a claim timed out waiting on it takes it back before it raises: every
            # claim hung, /readyz 200) and bounded: `position` waits for ever while a reset finds no leader (audit)
            async with asyncio.timeout(self.timeout_s):  # TimeoutError: a broker error, the reader starts again
                moved = {tp.partition: await reader.position(tp) for tp in tps}
            async with self._moved:
                self._positions.update(moved)
                self._moved.notify_all()
            if not self._ready.is_set() and all(self._positions[tp.partition] >= end[tp] for tp in tps):
                # the topic keeps 48 h, keys live 24 h: the expired ones go before the first request is answered,
                # or a source's keys would count against its quota twice over until the next prune
                self.table.prune(pruned := self.clock())
                log.info("gateway.claims_restored", keys=len(self.table), answer_bytes=self.table.body_bytes)
                self._ready.set()
            if prune_due(now := self.clock(), pruned):
                self.table.prune(now)
                pruned = now

    def _apply(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            rec = ClaimRecord.decode(value)
        except ValueError:
            log.warning("gateway.claim_unreadable")
            return
        self.table.apply(rec)

    async def _write(self, rec: ClaimRecord) -> tuple[int, int]:
        try:  # a request arriving while the claims are read (at start, after an outage) waits a little
            await asyncio.wait_for(self._ready.wait(), self.timeout_s)
        except TimeoutError:
            raise BrokerUnavailable("claims not restored yet") from None
        if (producer := self._producer) is None:
            raise BrokerUnavailable("claims not restored yet")
        if not self._answering:  # a write now would wait the outage out in the producer, and hold up its stop
            raise BrokerUnavailable("broker unreachable")
        try:
            meta = await asyncio.wait_for(producer.send_and_wait(
                self.topic, rec.encode(), key=rec.record_key.encode(), partition=self.partition(rec.key)),
                self.timeout_s)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(type(exc).__name__) from None
        return meta.partition, meta.offset

    def partition(self, key: str) -> int:
        return partition_for(key.encode(), self._partitions)

    async def claim(self, key: str, fingerprint: str, lease_s: float) -> Verdict:
        """Write a claim and read its partition past it; raises BrokerUnavailable when Kafka does not answer."""
        now = self.clock()
        ticket = new_ticket(key, fingerprint, now + lease_s)
        partition, offset = await self._write(ClaimRecord(key, "claimed", ticket.claim, fingerprint, now,
                                                          ticket.until))
        try:
            async with self._moved:
                await asyncio.wait_for(self._moved.wait_for(lambda: self._positions.get(partition, 0) > offset),
                                       self.timeout_s)
        except TimeoutError:
            raise BrokerUnavailable("the claims reader did not reach the claim") from None
        return verdict(self.table.get(key), ticket)

    def holds(self, key: str) -> bool:
        return self.table.get(key) is not None

    def live(self, key_scope: str) -> int:
        return self.table.live(key_scope)

    def _record(self, ticket: Ticket, state: str, answer: Answer | None, keep_s: float) -> ClaimRecord:
        now = self.clock()
        return ClaimRecord(ticket.key, "done" if state == "done" else "released", ticket.claim, ticket.fingerprint,
                           now, now + keep_s, answer)

    def sealing(self, ticket: Ticket, answer: Answer, keep_s: float) -> Records:
        rec = self._record(ticket, "done", answer, keep_s)
        # an outcome's record key is its claim key: the producer's partitioner puts it in the claim's partition
        return [(self.topic, KafkaRecord(key=rec.record_key.encode(), value=rec.encode(), headers=[]))]

    async def settle(self, ticket: Ticket, answer: Answer, keep_s: float, sealed: bool) -> None:
        if not sealed:
            await self._best_effort(self._record(ticket, "done", answer, keep_s))

    async def release(self, ticket: Ticket) -> None:
        await self._best_effort(self._record(ticket, "released", None, 0.0))

    async def _best_effort(self, rec: ClaimRecord) -> None:
        """A lost settle or release only keeps the key busy until its lease ends (409 meanwhile)."""
        try:
            await self._write(rec)
        except BrokerUnavailable as exc:
            log.warning("gateway.claim_not_settled", state=rec.state, error=str(exc))
