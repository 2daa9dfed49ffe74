"""The delivery ledger: a compacted topic, key = notification id, read whole at start and tailed after.

`done` ids (sent or dead-lettered) are never handed to a provider again; `deferred`
requests survive restarts and are released by whichever worker loads them.
A successful send is recorded here before the input offset is committed.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from schemas.notification import NotificationRequest


class Producer(Protocol):
    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            headers: list[tuple[str, bytes]] | None = None) -> object: ...


class Entry(BaseModel, frozen=True):
    state: Literal["done", "deferred"]
    outcome: str | None = None
    request: NotificationRequest | None = None


class Ledger:
    def __init__(self, bootstrap: str, topic: str, producer: Producer) -> None:
        self.topic, self.producer = topic, producer
        self.done: set[str] = set()
        self.deferred: dict[str, NotificationRequest] = {}
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                          isolation_level="read_committed", auto_offset_reset="earliest")
        self._tail: asyncio.Task[None] | None = None
        self._ends: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Load the whole ledger, then keep tailing it (entries written by other workers)."""
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic) or set()
        for _ in range(50):
            if parts:
                break
            await asyncio.sleep(0.1)
            await self._consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
            parts = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        await self.catch_up()
        self._tail = asyncio.create_task(self._follow())

    async def catch_up(self) -> None:
        """Return once every entry that existed when called has been applied."""
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        while await self._behind(ends):
            if self._tail is None:
                self._apply_batch(await self._consumer.getmany(timeout_ms=200))
            else:
                await asyncio.sleep(0.02)

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return True
        return False

    async def _follow(self) -> None:
        while True:
            self._apply_batch(await self._consumer.getmany(timeout_ms=500))

    def _apply_batch(self, batch: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
        for records in batch.values():
            for r in records:
                if r.value is not None:
                    self._apply(r.key.decode(), Entry.model_validate_json(r.value))

    def _apply(self, nid: str, entry: Entry) -> None:
        if entry.state == "done":
            self.done.add(nid)
            self.deferred.pop(nid, None)
        elif nid not in self.done and entry.request is not None:
            self.deferred[nid] = entry.request

    async def record_done(self, nid: str, outcome: str) -> None:
        self._apply(nid, Entry(state="done", outcome=outcome))
        await self.producer.send_and_wait(self.topic, orjson.dumps({"state": "done", "outcome": outcome}), nid.encode())

    async def record_deferred(self, request: NotificationRequest) -> None:
        entry = Entry(state="deferred", request=request)
        self._apply(request.notification_id, entry)
        await self.producer.send_and_wait(self.topic, entry.model_dump_json().encode(), request.notification_id.encode())

    async def stop(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
        await self._consumer.stop()
