"""The Kafka an erasure reaches (`services.privacy.erase`), in memory: topics made, the keys live for a subject,
and the records each transaction committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.privacy import erase

Sent = tuple[str, bytes | None, bytes | None]


class Broker:
    """What the erasure reaches of Kafka: topics made, keys live per subject, records committed per transaction."""

    def __init__(self, keys: set[str], *, sealed_here: bool = True, forbidden: tuple[str, ...] = ()) -> None:
        self.keys, self.sealed_here, self.forbidden = keys, sealed_here, list(forbidden)
        """`sealed_here`: whether the namespace's key topics existed before the erasure; `forbidden`: the erasure's
        topics the principal may not describe."""
        self.topics_made = 0
        self.committed: list[list[Sent]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def ensure_topics(*_: Any) -> None:
            self.topics_made += 1

        async def live_in(_: Any, topic: str, *__: Any) -> set[str]:
            return set(self.keys) if topic.endswith("keys.applicants") else set()  # no dead letters' keys here

        async def keys_written(*_: Any) -> bool:
            return self.sealed_here

        async def forbidden(*_: Any) -> list[str]:
            return self.forbidden

        monkeypatch.setattr(erase, "ensure_topics", ensure_topics)
        monkeypatch.setattr(erase, "keys_written", keys_written)
        monkeypatch.setattr(erase, "forbidden", forbidden)
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

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None) -> asyncio.Future[None]:
        self.open.append((topic, value, key))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done
