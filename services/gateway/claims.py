"""Claims on keys shared by every gateway instance: Idempotency-Keys and signature nonces.

A claim log is a sequence of records per key (on Kafka: `commune.gateway.claims`, each key's records in the
partition of the key, in one order every instance reads alike). `fold` reduces a key's records to its
state; it is the whole protocol:

- `claimed` takes the key when nobody holds it, or when the holder's `until` (lease or answer expiry) has
  passed at the claim's time; otherwise it loses and changes nothing;
- `done` (written with the request's events, in the same Kafka transaction) stores the answer until the
  key expires: only a holder writes one, so it stands even where compaction removed the records that
  showed its writer held the key; `released` (the request failed, nothing was published) frees the key at
  once, and counts only from the current holder.

An instance writes its claim, reads the key's partition up to its own record, and asks `verdict`: it
won, or the key is in flight (409), answered (the stored answer), or held for another request (422).

Compaction keeps the last record per record key (`record_key`): outcomes (`done`, `released`) share the
claim key, so only the latest outcome of a key is kept; each claim has a record key of its own, so a claim
written after an answer (a retry that was answered) can never compact the answer away. Claims leave the
log with the topic's retention.
This module is pure; `services.gateway.claimlog` runs it on Kafka, `MemoryClaims` in one process.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from schemas.wire import KafkaRecord

State = Literal["claimed", "done", "released"]
Records = list[tuple[str, KafkaRecord]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class ClaimRecord:
    key: str
    state: State
    claim: str
    fingerprint: str
    at: float
    until: float
    answer: Answer | None = None

    @property
    def record_key(self) -> str:
        """The Kafka record key, what compaction keeps the last of: the claim key for outcomes, unique for claims."""
        return f"{self.key}#claim:{self.claim}" if self.state == "claimed" else self.key

    def encode(self) -> bytes:
        answer = {"status": self.answer.status, "body": self.answer.body} if self.answer else None
        return orjson.dumps({"key": self.key, "state": self.state, "claim": self.claim, "fp": self.fingerprint,
                             "at": self.at, "until": self.until, "answer": answer})

    @classmethod
    def decode(cls, value: bytes) -> ClaimRecord:
        """Raises ValueError for anything that is no claim record (a record we did not write)."""
        try:
            raw = orjson.loads(value)
            answer = raw["answer"]
            if raw["state"] not in ("claimed", "done", "released"):
                raise ValueError(raw["state"])
            return cls(str(raw["key"]), raw["state"], str(raw["claim"]), str(raw["fp"]), float(raw["at"]),
                       float(raw["until"]), Answer(int(answer["status"]), dict(answer["body"])) if answer else None)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError("not a claim record") from None


@dataclass(frozen=True)
class Held:
    """A key's state: who holds it (claim id), for which request (fingerprint), until when, and its answer."""

    claim: str
    fingerprint: str
    until: float
    answer: Answer | None = None


def fold(held: Held | None, rec: ClaimRecord) -> Held | None:
    """The key's state after `rec` (see the module docstring)."""
    if rec.state == "claimed":
        return Held(rec.claim, rec.fingerprint, rec.until) if held is None or held.until <= rec.at else held
    if rec.state == "done":  # only a holder writes one; compaction may have removed what showed it held the key
        return Held(rec.claim, rec.fingerprint, rec.until, rec.answer)
    return None if held is not None and held.claim == rec.claim else held


@dataclass(frozen=True)
class Ticket:
    """A won claim: what its holder needs to settle it."""

    key: str
    claim: str
    fingerprint: str


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["won", "in_flight", "answered", "other_request"]
    ticket: Ticket | None = None
    answer: Answer | None = None


def verdict(held: Held | None, ticket: Ticket) -> Verdict:
    """What the claimant of `ticket` learns once the log is read up to its claim."""
    if held is not None and held.claim == ticket.claim:
        return Verdict("won", ticket)
    if held is None:  # our claim lost to a holder that released in between: ask again
        return Verdict("in_flight")
    if held.fingerprint != ticket.fingerprint:
        return Verdict("other_request")
    return Verdict("answered", answer=held.answer) if held.answer is not None else Verdict("in_flight")


class Claims(Protocol):
    async def claim(self, key: str, fingerprint: str, lease_s: float) -> Verdict: ...

    def sealing(self, ticket: Ticket, answer: Answer, keep_s: float) -> Records:
        """Records to publish in the transaction of the request's events: its answer commits with them."""
        ...

    async def settle(self, ticket: Ticket, answer: Answer, keep_s: float, sealed: bool) -> None:
        """Record the final answer (`sealed`: it was published with `sealing`'s records)."""
        ...

    async def release(self, ticket: Ticket) -> None: ...


def new_ticket(key: str, fingerprint: str) -> Ticket:
    return Ticket(key, uuid.uuid4().hex, fingerprint)


class MemoryClaims:
    """The same protocol in one process (tests, the OpenAPI export): nothing shared, nothing durable."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.held: dict[str, Held] = {}

    def _apply(self, rec: ClaimRecord) -> None:
        state = fold(self.held.get(rec.key), rec)
        if state is None:
            self.held.pop(rec.key, None)
        else:
            self.held[rec.key] = state

    async def claim(self, key: str, fingerprint: str, lease_s: float) -> Verdict:
        ticket, now = new_ticket(key, fingerprint), self.clock()
        self._apply(ClaimRecord(key, "claimed", ticket.claim, fingerprint, now, now + lease_s))
        return verdict(self.held.get(key), ticket)

    def sealing(self, ticket: Ticket, answer: Answer, keep_s: float) -> Records:
        return []

    async def settle(self, ticket: Ticket, answer: Answer, keep_s: float, sealed: bool) -> None:
        now = self.clock()
        self._apply(ClaimRecord(ticket.key, "done", ticket.claim, ticket.fingerprint, now, now + keep_s, answer))

    async def release(self, ticket: Ticket) -> None:
        now = self.clock()
        self._apply(ClaimRecord(ticket.key, "released", ticket.claim, ticket.fingerprint, now, now))
