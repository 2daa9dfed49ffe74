"""The delivery ledger: what was sent, dead-lettered or deferred, by notification id. Pure state plus a sender.

`done` ids (sent or dead-lettered) are never handed to a provider again; `deferred`
requests survive restarts and are released by whichever worker owns their commune.
Every change is applied here first, then written to the compacted ledger topic
(key = notification id) before the input offset that caused it is committed.
Reading the topic back (at start and while running) is `ledger_feed`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel

from schemas.notification import NotificationRequest
from services.notify.personal import redact


class Producer(Protocol):
    """What the ledger and the dispatcher need of a Kafka producer: one acknowledged send."""

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None, *,
                            headers: Sequence[tuple[str, bytes]] | None = None) -> object: ...


class Entry(BaseModel, frozen=True):
    state: Literal["done", "deferred"]
    outcome: str | None = None
    request: NotificationRequest | None = None


class Ledger:
    def __init__(self, topic: str, producer: Producer) -> None:
        self.topic, self.producer = topic, producer
        self.done: set[str] = set()
        self.deferred: dict[str, NotificationRequest] = {}

    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        """One ledger record read back from the topic; a tombstone or keyless record changes nothing."""
        if key is not None and value is not None:
            self.apply(key.decode(), Entry.model_validate_json(value))

    def apply(self, nid: str, entry: Entry) -> None:
        """`done` is final: a later deferral of the same id (from a worker whose ledger lagged) is ignored."""
        if entry.state == "done":
            self.done.add(nid)
            self.deferred.pop(nid, None)
        elif nid not in self.done and entry.request is not None:
            self.deferred[nid] = entry.request

    async def record_done(self, nid: str, outcome: str) -> None:
        entry = Entry(state="done", outcome=outcome)
        self.apply(nid, entry)
        await self.producer.send_and_wait(self.topic, entry.model_dump_json(exclude_none=True).encode(), nid.encode())

    async def record_deferred(self, request: NotificationRequest) -> None:
        """Kept (and written) without clear contacts: the opener fills them again at delivery (ADR 0015)."""
        entry = Entry(state="deferred", request=redact(request))
        self.apply(request.notification_id, entry)
        nid = request.notification_id
        await self.producer.send_and_wait(self.topic, entry.model_dump_json().encode(), nid.encode())
