"""Publishing a request's events: all of them in one Kafka transaction, or none.

Concurrent requests are grouped into one transaction (group commit): each
request is still all-or-nothing. The transaction commits only when the broker has acknowledged every record
(acks=all, idempotent producer), so a `202` means the events are durably on
the raw topic. Any Kafka failure aborts, drops the producer (it is rebuilt on
the next request) and surfaces as `BrokerUnavailable`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.topics import MAX_RECORD_BYTES
from schemas.wire import KafkaRecord

log = structlog.get_logger("gateway")


class BrokerUnavailable(Exception):
    """Kafka did not acknowledge the request's records; nothing of it is visible to read_committed readers."""


class Publisher(Protocol):
    async def publish(self, records: list[tuple[str, KafkaRecord]]) -> None: ...

    async def close(self) -> None: ...


class KafkaPublisher:
    def __init__(self, bootstrap: str, transactional_id: str, timeout_s: float) -> None:
        self.bootstrap = bootstrap
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()  # one open transaction per producer
        self._pending: list[tuple[list[tuple[str, KafkaRecord]], asyncio.Future[None]]] = []

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, transactional_id=self.transactional_id, enable_idempotence=True,
                acks="all", max_request_size=MAX_RECORD_BYTES + 65536, request_timeout_ms=int(self.timeout_s * 1000),
                client_id="commune-bus-gateway",
            )
            try:
                await producer.start()
            except BaseException:
                await _quietly_stop(producer)
                raise
            self._producer = producer
        return self._producer

    async def publish(self, records: list[tuple[str, KafkaRecord]]) -> None:
        """Group commit: requests arriving while a transaction is open share the next one (all or none)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((records, done))
        async with self._lock:
            if not done.done():
                group, self._pending = self._pending, []
                try:
                    await asyncio.wait_for(self._publish([r for rs, _ in group for r in rs]), timeout=self.timeout_s)
                except (KafkaError, TimeoutError, OSError) as exc:
                    log.warning("gateway.broker_unavailable", error=type(exc).__name__, requests=len(group))
                    producer, self._producer = self._producer, None
                    if producer is not None:
                        await _quietly_stop(producer)
                    for _, fut in group:
                        fut.set_exception(BrokerUnavailable(type(exc).__name__))
                except BaseException:  # cancelled mid-transaction: drop the producer; the others must not wait forever
                    producer, self._producer = self._producer, None
                    if producer is not None:
                        asyncio.ensure_future(_quietly_stop(producer))
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(BrokerUnavailable("cancelled"))
                    raise
                else:
                    for _, fut in group:
                        fut.set_result(None)
        await done

    async def _publish(self, records: list[tuple[str, KafkaRecord]]) -> None:
        producer = await self._ready()
        async with producer.transaction():
            for topic, rec in records:
                await producer.send(topic, rec.value, key=rec.key, headers=rec.headers)

    async def close(self) -> None:
        if self._producer is not None:
            await _quietly_stop(self._producer)
            self._producer = None


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=5)
    except (KafkaError, TimeoutError, OSError):
        pass
