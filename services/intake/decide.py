"""The per-record decision of intake: a raw record becomes a canonical event or a dead letter with its reason.

normalise -> source policy -> de-duplication -> sealing (ADR 0015), in that order. Pure: no Kafka, no
asyncio, no clock (the rejection time is passed in) and no state change (the
shell remembers a published id in `SeenIds` once it has put the event in the
transaction). A `Decider` is built once per raw partition and fetch, so the
per-record call carries only what changes from record to record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from schemas.deadletter import DeadLetterContext, Reason, Rejection, internal_error
from schemas.events import Family
from services.common import store_faults
from services.intake.normalise import normalise, seal_accepted
from services.intake.outcome import Accepted
from services.privacy.keyring import Keyring

Decision = Accepted | DeadLetterContext
"""Accepted: publish `event` canonical. DeadLetterContext: dead-letter the record with these `dlq.*` headers."""


class PublishedIds(Protocol):
    """The events already published from one raw partition (`dedup.SeenIds`)."""

    def published(self, source: str, event_id: str, /) -> bool: ...


class SourcePolicy(Protocol):
    """Decides whether an event's source may publish it (the source registry); None = allowed."""

    def __call__(self, source: str, family: Family, commune: str) -> Rejection | None: ...


def allow_all(source: str, family: Family, commune: str) -> Rejection | None:
    return None


@dataclass(frozen=True, slots=True)
class Decider:
    """Decides the records of one raw topic-partition, read at one time."""

    family: Family
    topic: str
    partition: int
    seen: PublishedIds
    """Events (source and id) already published from this partition."""
    policy: SourcePolicy
    max_record_bytes: int
    rejected_at: str
    """ISO time stamped on this fetch's dead letters."""
    keyring: Keyring | None = None
    """Seals accepted dossier events (ADR 0015); None only where no canonical record is written (tests, tools)."""

    def decide(self, value: bytes | None, headers: Sequence[tuple[str, bytes]], offset: int,
               written_at: datetime | None = None) -> Decision:
        """The fate of the record at `offset`: its canonical event, or why and where from it is dead-lettered.
        `written_at`: when the record was written to Kafka (`validate.written_at`); one written before its
        applicant's erasure is sealed already erased (ADR 0042).

        Raises only `StoreFault` (the key store's disk failing, which is no record's bug: the process ends); any other
        unexpected exception dead-letters this record as `internal_error` (its type and file:line, never its text),
        so one record cannot stop the partition.
        """
        try:
            return self._decide(value, headers, offset, written_at)
        except Exception as exc:  # a bug met by one record: dead-letter it, go on with the next
            store_faults.raise_if_fault(exc)  # (the key store's disk failing is no record's bug: the process ends)
            r = internal_error(exc)
            return self._dead_letter(r.reason, r.field, r.message, offset)

    def _decide(self, value: bytes | None, headers: Sequence[tuple[str, bytes]], offset: int,
                written_at: datetime | None) -> Decision:
        outcome = normalise(self.family, value, headers, self.max_record_bytes)
        if isinstance(outcome, Accepted):
            event = outcome.event
            if (denied := self.policy(event.source, self.family, event.commune)) is not None:
                return self._dead_letter(denied.reason, denied.field, denied.message, offset)
            if self.seen.published(event.source, event.id):
                # not the id itself: it may be a citizen's number (ADR 0026 seals ce_id), and messages are clear
                return self._dead_letter(Reason.DUPLICATE_EVENT, "id",
                                         "id: an event of this source with this id was already published", offset)
            return outcome if self.keyring is None else seal_accepted(outcome, self.keyring, written_at)
        r = outcome.rejection
        return self._dead_letter(r.reason, r.field, r.message, offset, outcome.problems)

    def _dead_letter(self, reason: Reason, field: str, message: str, offset: int,
                     problems: tuple[Rejection, ...] = ()) -> DeadLetterContext:
        """`problems`: every one found, the first that of `reason`; kept when more than one (`dlq.problems`), as the
        dead letter's headers read back give them."""
        return DeadLetterContext(
            reason=reason, field=field, message=message, source_topic=self.topic, source_partition=self.partition,
            source_offset=offset, rejected_at=self.rejected_at, problems=problems if len(problems) > 1 else (),
        )
