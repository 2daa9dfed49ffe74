"""Claims on keys shared by every gateway instance: Idempotency-Keys and signature nonces.

A claim log is a sequence of records per key (on Kafka: `commune.gateway.claims`, each key's records in the
partition of the key, in one order every instance reads alike). `fold` reduces a key's records to its
state; it is the whole protocol:

- `claimed` takes the key when nobody holds it, or when the holder's `until` (lease or answer expiry) has
  passed at the claim's time; otherwise it loses and changes nothing;
- `done` (written with the request's events, in the same Kafka transaction) stores the answer until the
  key expires: only a holder writes one, so it stands even where compaction removed the records that
  showed its writer held the key; `released` (the request failed, nothing was published) frees the key at
  once, and counts only from the current holder, and only while it has no answer: a transaction whose commit
  reached the broker after the publisher gave up on it (503, released) committed its answer all the same.

An instance writes its claim, reads the key's partition up to its own record, and asks `verdict`: it
won, or the key is in flight (409), answered (the stored answer), or held for another request (422).

Compaction keeps the last record per record key (`record_key`): answers (`done`) share the claim key, so only
the latest answer of a key is kept; each claim and each release has a record key of its own, so a claim written
after an answer (a retry that was answered), or a release written late (a holder paused past its lease, its
transaction aborted, `publisher.LeaseLapsed`), can never compact the answer away. Claims leave the
log with the topic's retention.

A key's state is held by every instance for the key's TTL, so how many keys a source may hold at once is
bounded (`ClaimTable.live`: the handler refuses a new key past `GATEWAY_IDEMPOTENCY_KEYS_PER_SOURCE`), and what
it keeps of an answer is bounded (`Stored`, `ClaimTable`): the status, a digest of the body and the body without
its lists, always; the whole body only within the instance's byte budget for bodies
(`GATEWAY_IDEMPOTENCY_ANSWER_BYTES`), the oldest dropped first. Dropping a body changes no verdict: the key stays
answered until it expires.

This module is pure; `services.gateway.claimlog` runs it on Kafka, `services.gateway.memory_claims` in one process.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
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
        """The Kafka record key, what compaction keeps the last of: the claim key for answers, unique for claims and
        releases (a release written by a holder whose lease lapsed, after a retry elsewhere won the key and answered
        it, would otherwise compact that answer away)."""
        if self.state == "done":
            return self.key
        return f"{self.key}#{'claim' if self.state == 'claimed' else 'release'}:{self.claim}"

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


@dataclass(frozen=True, slots=True)
class Stored:
    """An answer as a key's state keeps it: its status, the SHA-256 of its body, the body with its lists emptied
    (`outline`: counts, error kind and message) and, while the budget allows, the whole body (JSON)."""

    status: int
    digest: bytes
    outline: bytes
    body: bytes | None = None

    @classmethod
    def of(cls, answer: Answer) -> Stored:
        outline = {k: [] if isinstance(v, list | dict) else v for k, v in answer.body.items()}
        return cls(answer.status, digest(answer), _exact(orjson.dumps(outline)), _exact(orjson.dumps(answer.body)))

    def matches(self, answer: Answer) -> bool:
        """Whether `answer` is this one (an answer rebuilt for a replay whose body was dropped)."""
        return answer.status == self.status and digest(answer) == self.digest

    def answer(self) -> Answer:
        """The whole answer, or its outline when the body was dropped."""
        return Answer(self.status, orjson.loads(self.body if self.body is not None else self.outline))


def digest(answer: Answer) -> bytes:
    return hashlib.sha256(orjson.dumps(answer.body, option=orjson.OPT_SORT_KEYS)).digest()


def _exact(data: bytes) -> bytes:
    """A copy of its own size: what orjson returns keeps its whole buffer (at least 4 KiB) for as long as it lives."""
    return bytes(memoryview(data))


@dataclass(frozen=True, slots=True)
class Held:
    """A key's state: who holds it (claim id), for which request (fingerprint), until when, and its answer."""

    claim: str
    fingerprint: str
    until: float
    answer: Stored | None = None


def fold(held: Held | None, rec: ClaimRecord) -> Held | None:
    """The key's state after `rec` (see the module docstring)."""
    if rec.state == "claimed":
        return Held(rec.claim, rec.fingerprint, rec.until) if held is None or held.until <= rec.at else held
    if rec.state == "done":  # only a holder writes one; compaction may have removed what showed it held the key
        return Held(rec.claim, rec.fingerprint, rec.until, Stored.of(rec.answer) if rec.answer else None)
    # a release after its own answer committed (the commit's answer came after the timeout: 503, released) frees nothing
    return None if held is not None and held.claim == rec.claim and held.answer is None else held


def scope(key: str) -> str | None:
    """The scope a key counts against (`ClaimTable.live`): `idem:<source id>` for an Idempotency-Key's claim, and
    `nonce:<source id>` for a signature's nonce (`services.gateway.idempotency`: the last part of either is hex,
    without a colon); None for anything else."""
    return key.rpartition(":")[0] if key.startswith(("idem:", "nonce:")) else None


class ClaimTable:
    """Every key's state (`fold`), with the answers' whole bodies in at most `budget` bytes: past it the oldest
    bodies are dropped (their keys keep status, digest and outline), so the table grows with the number of live
    keys only, never with their answers' size; and how many live keys each scope holds (`live`), so that the
    number of keys can be bounded per source too."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held: dict[str, Held] = {}
        self._bodies: OrderedDict[str, int] = OrderedDict()  # keys whose answer keeps its body, oldest first
        self.body_bytes = 0
        self._live: Counter[str] = Counter()

    def get(self, key: str) -> Held | None:
        return self.held.get(key)

    def __len__(self) -> int:
        return len(self.held)

    def live(self, key_scope: str) -> int:
        """How many keys of `key_scope` (`scope`) are held now."""
        return self._live.get(key_scope, 0)

    def _count(self, key: str, delta: int) -> None:
        if (name := scope(key)) is not None:
            self._live[name] += delta
            if self._live[name] <= 0:
                del self._live[name]

    def apply(self, rec: ClaimRecord) -> None:
        held = self.held.get(rec.key)
        state = fold(held, rec)
        if state is held:
            return
        self.body_bytes -= self._bodies.pop(rec.key, 0)
        if state is None:
            del self.held[rec.key]
            self._count(rec.key, -1)
            return
        if held is None:
            self._count(rec.key, +1)
        self.held[rec.key] = state
        if state.answer is not None and state.answer.body is not None:
            self._bodies[rec.key] = len(state.answer.body)
            self.body_bytes += len(state.answer.body)
        while self.body_bytes > self.budget:
            key, size = self._bodies.popitem(last=False)
            self.body_bytes -= size
            kept = self.held[key]
            self.held[key] = replace(kept, answer=replace(kept.answer, body=None) if kept.answer else None)

    def prune(self, now: float) -> None:
        """Forget the keys whose `until` has passed."""
        for key in [k for k, h in self.held.items() if h.until <= now]:
            del self.held[key]
            self.body_bytes -= self._bodies.pop(key, 0)
            self._count(key, -1)


@dataclass(frozen=True)
class Ticket:
    """A won claim: what its holder needs to settle it."""

    key: str
    claim: str
    fingerprint: str
    until: float = math.inf
    """When its lease ends (the claim's `until`): past it a claim elsewhere may take the key, so what the holder
    publishes with its answer must be on the log before then (`publisher.KafkaPublisher.publish`)."""


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["won", "in_flight", "answered", "other_request"]
    ticket: Ticket | None = None
    answer: Stored | None = None


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

    def holds(self, key: str) -> bool:
        """Whether `key` is held now, as far as this instance has read."""
        ...

    def live(self, key_scope: str) -> int:
        """How many keys of `key_scope` (`scope`) are held now, as far as this instance has read."""
        ...

    def sealing(self, ticket: Ticket, answer: Answer, keep_s: float) -> Records:
        """Records to publish in the transaction of the request's events: its answer commits with them."""
        ...

    async def settle(self, ticket: Ticket, answer: Answer, keep_s: float, sealed: bool) -> None:
        """Record the final answer (`sealed`: it was published with `sealing`'s records)."""
        ...

    async def release(self, ticket: Ticket) -> None: ...


def new_ticket(key: str, fingerprint: str, until: float) -> Ticket:
    return Ticket(key, uuid.uuid4().hex, fingerprint, until)


DEFAULT_ANSWER_BYTES = 64 * 1024 * 1024
"""Whole answer bodies one instance keeps (`GATEWAY_IDEMPOTENCY_ANSWER_BYTES`)."""
PRUNE_EVERY_S = 30.0


def prune_due(now: float, pruned: float) -> bool:
    """Whether a table last pruned at `pruned` is due a prune at `now`: `PRUNE_EVERY_S` later, or at once when the wall
    clock stepped back past the last prune. Waiting for the old clock's next prune kept every expired nonce counted
    for the length of the step: after a 7-hour step back (a host's clock on Vietnam time until NTP set it right) a
    source sending at 4% of its rate had every signed request refused 429 for hours (time audit, 2026-12-06)."""
    return not pruned <= now < pruned + PRUNE_EVERY_S
