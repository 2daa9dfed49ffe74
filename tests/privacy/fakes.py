"""The Kafka an erasure reaches (`services.privacy.erase`), in memory: the topics missing, the keys live for a subject,
and the records each transaction committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata

from schemas.topics import TOPICS
from services.privacy import erase, required_topics

Sent = tuple[str, bytes | None, bytes | None]
_LOG_APPEND_TIME = tuple(t.name for t in TOPICS if t.config.get("message.timestamp.type") == "LogAppendTime")


def _now() -> datetime:
    return datetime.now(UTC)


class Broker:
    """What the erasure reaches of Kafka: topics missing, keys live per subject, records committed per transaction."""

    def __init__(self, keys: set[str], *, missing: tuple[str, ...] = (), forbidden: tuple[str, ...] = (),
                 fail_after_commit: BaseException | None = None, clock: Callable[[], datetime] = _now) -> None:
        self.keys, self.missing, self.forbidden = keys, list(missing), list(forbidden)
        self.clock = clock
        """The broker's clock: it stamps the records of LogAppendTime topics (the registry's), as a broker does."""
        """`missing`: the erasure's topics that do not exist; `forbidden`: those the principal may not describe."""
        self.fail_after_commit = fail_after_commit
        """Raised by the first read of the keys after a transaction committed (the clean-up's): a broker gone."""
        self.checked = 0
        """How many times the erasure's topics were looked up."""
        self.committed: list[list[Sent]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def require(*_: Any) -> None:
            self.checked += 1
            if self.missing:
                raise required_topics.TopicsMissing(self.missing)

        async def live_in(_: Any, topic: str, *__: Any) -> set[str]:
            if self.committed and self.fail_after_commit is not None:
                raise self.fail_after_commit
            return set(self.keys) if topic.endswith("keys.applicants") else set()  # no dead letters' keys here

        async def forbidden(*_: Any) -> list[str]:
            return self.forbidden

        monkeypatch.setattr(required_topics, "require", require)
        monkeypatch.setattr(erase, "forbidden", forbidden)
        monkeypatch.setattr(erase, "PASS_INTERVAL_S", 0.0)
        monkeypatch.setattr(erase, "_live_in", live_in)
        monkeypatch.setattr(erase.clients, "transactional_producer", lambda *_a, **_k: Producer(self))


class Producer:
    def __init__(self, broker: Broker) -> None:
        self.broker, self.open = broker, list[Sent]()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.open = []
        yield
        self.broker.committed.append(self.open)
        if any(value is None for _, value, _ in self.open):
            self.broker.keys.clear()

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None) -> asyncio.Future[RecordMetadata]:
        """The broker's answer: a LogAppendTime topic's record stamped by its clock, another's with none (-1)."""
        self.open.append((topic, value, key))
        stamped = any(topic.endswith(name) for name in _LOG_APPEND_TIME)
        timestamp = int(self.broker.clock().timestamp() * 1000) if stamped else -1
        done = asyncio.get_running_loop().create_future()
        done.set_result(RecordMetadata(topic, 0, TopicPartition(topic, 0), len(self.open) - 1, timestamp,
                                       int(stamped), None))
        return done
