"""Publishing a request's events: all of them in one Kafka transaction, or none.

Concurrent requests are grouped into one transaction (group commit): each
request is still all-or-nothing. The transaction commits only when the broker has acknowledged every record
(acks=all, idempotent producer; each send's outcome is checked before the commit, which aiokafka would
otherwise make even after a refused batch), so a `202` means the events are durably on the raw topic.
Any Kafka failure aborts, drops the producer (it is rebuilt on
the next request) and surfaces as `BrokerUnavailable`.

A request holding an Idempotency-Key commits only if its records were all acknowledged within the key's lease:
past it a retry on another instance may have taken the key and published them (a gateway paused between its claim
and its transaction, SIGSTOP or a stalled VM, published them again when it resumed: the events twice). Records
acknowledged before the lease ended precede on the claims topic any claim made after it, so the retry meets this
answer (or its abort) there.

The transactional id is the instance's own (`GATEWAY_INSTANCE_ID`): a restarted instance fences its
predecessor, whose open transaction is aborted and whose next one fails. A fenced publisher is never
rebuilt (it would fence its successor in turn): it raises `Fenced` for good and the process ends.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced

from schemas.wire import KafkaRecord
from services.common import clients, transactions
from services.common.closing import close_within, within
from services.common.settings import KafkaConnection

log = structlog.get_logger("gateway")
Records = list[tuple[str, KafkaRecord]]
STOP_TIMEOUT_S = 5.0
"""How long a dropped producer's stop may hold up the requests behind it (it goes on in the background)."""
BROKER_ERRORS = (KafkaError, TimeoutError, OSError)
"""What `BrokerUnavailable` translates: the broker did not answer, or answered with an error."""
T = TypeVar("T")


class BrokerUnavailable(Exception):
    """Kafka did not acknowledge the request's records; nothing of it is visible to read_committed readers."""


class LeaseLapsed(BrokerUnavailable):
    """An Idempotency-Key's lease ended before the request's records were acknowledged: the transaction was aborted."""


class Fenced(BrokerUnavailable):
    """Another producer took this instance's transactional id: this gateway must stop publishing."""


class Publisher(Protocol):
    async def publish(self, records: Records, until: float = math.inf) -> None: ...

    async def close(self) -> None: ...


class KafkaPublisher:
    """One transactional producer (started on first use, rebuilt after a failure) shared by every request."""

    def __init__(self, conn: KafkaConnection, transactional_id: str, timeout_s: float,
                 transaction_timeout_ms: int = 60_000, committed: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        """`committed` is called after each committed transaction (`Health.committed`: the last-commit time); `clock`
        is the claims' (wall time), which leases are measured by."""
        self.conn = conn
        self.committed = committed
        self.clock = clock
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self.transaction_timeout_ms = transaction_timeout_ms
        self.fenced = False
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()  # one open transaction per producer
        self._pending: list[tuple[Records, float, asyncio.Future[None]]] = []
        self._stopping: set[asyncio.Task[None]] = set()  # producers dropped mid-transaction; `close` awaits them
        self._abandoned: set[asyncio.Future[Any]] = set()  # work given up at its timeout; `_drop` ends it

    @property
    def connected(self) -> bool:
        """True while a started producer is held (the broker answered and no request has failed since)."""
        return self._producer is not None

    async def connect(self) -> None:
        """Start the producer now (registers the transactional id); raises `BrokerUnavailable`."""
        async with self._lock:
            try:
                await self._bounded(self._ready())
            except BROKER_ERRORS as exc:
                raise self._translate(exc) from None

    def _translate(self, exc: BaseException) -> BrokerUnavailable:
        if isinstance(exc, ProducerFenced | InvalidProducerEpoch):
            if not self.fenced:
                log.error("gateway.fenced", transactional_id=self.transactional_id)
            self.fenced = True
        return Fenced(type(exc).__name__) if self.fenced else BrokerUnavailable(type(exc).__name__)

    async def _ready(self) -> AIOKafkaProducer:
        if self.fenced:
            raise ProducerFenced()
        if self._producer is None:
            producer = clients.transactional_producer(
                self.conn, transactional_id=self.transactional_id, client_id="commune-bus-gateway",
                request_timeout_ms=int(self.timeout_s * 1000), transaction_timeout_ms=self.transaction_timeout_ms,
            )
            try:
                await producer.start()
            except BaseException:
                await _quietly_stop(producer)
                raise
            self._producer = producer
        return self._producer

    async def publish(self, records: Records, until: float = math.inf) -> None:
        """Group commit: requests arriving while a transaction is open share the next one (all or none). `until`: when
        the request's Idempotency-Key lease ends (`claims.Ticket.until`); acknowledged later, the transaction is
        aborted (`LeaseLapsed`), the others' requests in it too (503: their clients send them again)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((records, until, done))
        async with self._lock:
            if not done.done():
                group, self._pending = self._pending, []
                try:
                    await self._bounded(self._publish([r for rs, _, _ in group for r in rs],
                                                      min(u for _, u, _ in group)))
                except LeaseLapsed as exc:  # aborted by the broker's answer: the producer is sound
                    log.warning("gateway.lease_lapsed", requests=len(group))
                    for _, _, fut in group:
                        fut.set_exception(LeaseLapsed(str(exc)))
                except BROKER_ERRORS as exc:
                    log.warning("gateway.broker_unavailable", error=type(exc).__name__, requests=len(group))
                    for _, _, fut in group:  # answered before the drop: a cancel during it must not leave them waiting
                        fut.set_exception(self._translate(exc))
                    await self._drop()
                except BaseException:  # cancelled mid-transaction: drop the producer; the others must not wait forever
                    self._drop_later()
                    for _, _, fut in group:
                        if not fut.done():
                            fut.set_exception(BrokerUnavailable("cancelled"))
                    raise
                else:
                    self.committed()
                    for _, _, fut in group:
                        fut.set_result(None)
        await done

    async def _bounded(self, work: Awaitable[T]) -> T:
        """`work` within `timeout_s`, else TimeoutError at once: the work is cancelled and never waited for. A
        transaction cancelled mid-way aborts, and aiokafka's abort waits for the broker for as long as it does not
        answer: with `wait_for`, a broker frozen under a transaction held the lock, and every request behind it, that
        long, past the Idempotency-Key's lease, which counts each wait on Kafka within the timeout (`key_held_s`). The
        producer is dropped after any failure; `_drop` then ends what was given up (the new producer fences the
        transaction on the broker, or its timeout aborts it)."""
        return await within(work, self.timeout_s, self._abandoned)

    async def _publish(self, records: Records, until: float = math.inf) -> None:
        producer = await self._ready()
        async with transactions.transaction(producer):
            sent = [await producer.send(topic, rec.value, key=rec.key, headers=rec.headers) for topic, rec in records]
            await transactions.all_sent(sent)  # aiokafka would commit a transaction whose batch the broker refused
            if self.clock() >= until:  # checked once acknowledged: a pause before or during the sends is seen here
                raise LeaseLapsed("an Idempotency-Key's lease ended before its records were acknowledged")

    async def _drop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly_stop(producer)
        for task in list(self._abandoned):  # cancelled once, it may wait in aiokafka's abort: no one waits for that
            task.cancel()

    def _drop_later(self) -> None:
        """Drop the producer without waiting (the caller is being cancelled); `close` waits for it."""
        producer, self._producer = self._producer, None
        if producer is not None:
            task = asyncio.get_running_loop().create_task(_quietly_stop(producer))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        await self._drop()
        if self._stopping:
            await asyncio.gather(*self._stopping)


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    """Stop a dropped producer within `STOP_TIMEOUT_S`; a failure is logged (the broker is usually why it was
    dropped), never raised."""
    await close_within("gateway", "producer", producer.stop, STOP_TIMEOUT_S)
