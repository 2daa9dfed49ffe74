"""Simple fakes behind notify's small Protocols: a channel, a producer that records sends, a clock, a spawner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from schemas.notification import NotificationRequest
from services.notify.channels.base import Message, Receipt
from services.notify.channels.http import HttpClient
from services.notify.delivery import Dispatcher


@dataclass(frozen=True)
class Sent:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: dict[str, bytes]

    def json(self) -> dict[str, Any]:
        assert self.value is not None
        parsed: dict[str, Any] = json.loads(self.value)
        return parsed


class FakeProducer:
    """Records every acknowledged send, in order (the `Producer` protocol of the ledger and the dispatcher).

    `max_bytes` per topic: a larger value is refused with MessageSizeTooLargeError, as the broker refuses a
    record over the topic's `max.message.bytes`."""

    def __init__(self, max_bytes: Mapping[str, int] | None = None) -> None:
        self.sent: list[Sent] = []
        self.max_bytes, self.refused = dict(max_bytes or {}), 0

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None, *,
                            headers: Sequence[tuple[str, bytes]] | None = None) -> object:
        if len(value or b"") > self.max_bytes.get(topic, len(value or b"")):
            self.refused += 1
            raise MessageSizeTooLargeError()
        self.sent.append(Sent(topic, value, key, dict(headers or [])))
        return None

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


class FakeChannel:
    """Answers sends from a script (a `Receipt`, or a `DeliveryError` to raise; then "ok"); holds the requests
    `gated` picks until `gate` is set."""

    def __init__(self, *script: Receipt | Exception, gate: asyncio.Event | None = None,
                 gated: Callable[[NotificationRequest], bool] = lambda request: True) -> None:
        self.script, self.gate, self.gated = list(script), gate, gated
        self.attempted: list[str] = []
        self.delivered: list[str] = []
        self.messages: list[Message] = []

    async def send(self, message: Message) -> Receipt:
        nid = message.request.notification_id
        self.attempted.append(nid)
        self.messages.append(message)
        if self.gate is not None and self.gated(message.request):
            await self.gate.wait()
        outcome = self.script.pop(0) if self.script else Receipt(f"msg-{nid[:8]}")
        if isinstance(outcome, Exception):
            raise outcome
        self.delivered.append(nid)
        return outcome

    async def close(self) -> None: ...


class FixedClock:
    """A clock that stays where a test puts it, and counts how often it was read (`reads`)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.now


class Tasks:
    """A `Spawn` that keeps every task, so a test sees one that failed (in the service, the supervisor does)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, asyncio.Task[None]]] = []

    def __call__(self, name: str, coro: Coroutine[Any, Any, None], /) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.started.append((name, task))
        return task

    def failures(self) -> list[BaseException]:
        return [exc for _, t in self.started if t.done() and not t.cancelled() and (exc := t.exception()) is not None]


class Calls:
    """A `done` callback that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@asynccontextmanager
async def running(d: Dispatcher, http: HttpClient) -> AsyncIterator[Dispatcher]:
    """`d` started; stopped, and the HTTP client its channels call through closed, at the end."""
    d.start()
    try:
        yield d
    finally:
        await d.stop()
        await http.close()


class OnePartition:
    """What a consumer of the one partition `tp` answers of its assignment and pauses (the fake consumers of a test of
    notify's consume loop)."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp, self._paused = tp, set[TopicPartition]()

    def assignment(self) -> Set[TopicPartition]:
        return frozenset({self.tp})

    def paused(self) -> Set[TopicPartition]:
        return frozenset(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)
