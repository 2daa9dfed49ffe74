"""`MemoryClaims`: the claims protocol of `services.gateway.claims` in one process (`services.gateway.claimlog` runs
it on Kafka)."""

from __future__ import annotations

from typing import Any

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


class MemoryClaims:
    """The same protocol in one process (tests, the OpenAPI export): nothing shared, nothing durable."""

    def __init__(self, clock: Any, answer_bytes: int = DEFAULT_ANSWER_BYTES) -> None:
        self.clock = clock
        self.table = ClaimTable(answer_bytes)
        self._pruned = clock()

    def _apply(self, rec: ClaimRecord) -> None:
        self._prune(rec.at)
        self.table.apply(rec)

    def _prune(self, now: float) -> None:
        if prune_due(now, self._pruned):
            self.table.prune(now)
            self._pruned = now

    async def claim(self, key: str, fingerprint: str, lease_s: float) -> Verdict:
        now = self.clock()
        ticket = new_ticket(key, fingerprint, now + lease_s)
        self._apply(ClaimRecord(key, "claimed", ticket.claim, fingerprint, now, ticket.until))
        return verdict(self.table.get(key), ticket)

    def holds(self, key: str) -> bool:
        return self.table.get(key) is not None

    def live(self, key_scope: str) -> int:
        self._prune(self.clock())  # as the Kafka reader does between its reads
        return self.table.live(key_scope)

    def sealing(self, ticket: Ticket, answer: Answer, keep_s: float) -> Records:
        return []

    async def settle(self, ticket: Ticket, answer: Answer, keep_s: float, sealed: bool) -> None:
        now = self.clock()
        self._apply(ClaimRecord(ticket.key, "done", ticket.claim, ticket.fingerprint, now, now + keep_s, answer))

    async def release(self, ticket: Ticket) -> None:
        now = self.clock()
        self._apply(ClaimRecord(ticket.key, "released", ticket.claim, ticket.fingerprint, now, now))
