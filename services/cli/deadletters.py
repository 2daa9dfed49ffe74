"""Pure rules of `dlq list` / `dlq replay`: which dead letters match, and what a re-driven record looks like."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from schemas import wire
from schemas.deadletter import DeadLetterContext, Header, Reason
from schemas.replay import letter_digest
from schemas.times import to_utc
from services.intake import portal
from services.intake.outputs import WRITTEN_AT

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Filters:
    reasons: frozenset[Reason] = frozenset()
    source: str | None = None
    """Exact CloudEvents source, or a prefix ending in `*`."""
    since: datetime | None = None
    until: datetime | None = None
    topics: frozenset[str] = frozenset()
    """The raw topics the dead letters were read from (`dlq.source.topic`, exact names); any when empty."""


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    """The original record's headers (a header may have no value), then intake's `dlq.*` ones."""
    context: DeadLetterContext
    source: str | None
    digest: str
    """`schemas.replay.letter_digest` of the record as the DLQ holds it: with the position, the replay log's key."""
    sealed_under: tuple[str, str] | None = None
    """The (subject, key id) a sealed letter was opened with: asked again just before a replay (`dlq.unerased`)."""

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


def source_of(headers: Headers, value: bytes | None) -> str | None:
    """The sending system: `ce_source` header, `source` header (portal shape), `source` in structured JSON, or for a
    portal-shape record without a `source` header the source intake gives it, its commune's portal sync (`--source
    '/communes/<code>/*'` missed those: the runbooks' first look at a silent commune)."""
    h = dict(headers)
    for name in ("ce_source", portal.SOURCE_HEADER):
        if h.get(name) is not None:
            return wire.lenient_text(h[name])
    try:
        obj: Any = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("source"), str):
        return str(obj["source"])
    commune = h.get(portal.COMMUNE_HEADER)
    if portal.is_portal_shape(obj) and commune is not None:  # as intake reads the header (`normalise._portal`)
        return portal.sync_source(portal.commune_code(commune))
    return None


def dead_letter(partition: int, offset: int, key: bytes | None, value: bytes | None, headers: Headers,
                sealed_under: tuple[str, str] | None = None, digest: str | None = None) -> DeadLetter:
    """Raises KeyError or ValueError for a record without the `dlq.*` headers intake writes, or with a reason this
    CLI does not know (a newer intake's). `digest` is that of the record as stored (a sealed letter's, opened here);
    by default that of the record given, stored unsealed."""
    return DeadLetter(partition, offset, key, value, list(headers), DeadLetterContext.from_headers(list(headers)),
                      source_of(headers, value), digest or letter_digest(key, value, headers), sealed_under)


def replayable(letter: DeadLetter, f: Filters) -> bool:
    """A duplicate's dead letter is replayed only when asked for by reason (`--reason duplicate_event`): replayed
    in bulk weeks later, past intake's de-duplication window (7 days) and notify's ledger window (15 days, ADR
    0020), it would come out canonical a second time and be notified again."""
    return letter.context.reason is not Reason.DUPLICATE_EVENT or Reason.DUPLICATE_EVENT in f.reasons


def matches(letter: DeadLetter, f: Filters) -> bool:
    if f.source is not None:
        if letter.source is None:
            return False
        if f.source.endswith("*") and not letter.source.startswith(f.source[:-1]):
            return False
        if not f.source.endswith("*") and letter.source != f.source:
            return False
    return context_matches(letter.context, f)


def context_matches(context: DeadLetterContext, f: Filters) -> bool:
    """Whether intake's `dlq.*` context matches every filter but `source`: all a sealed letter says in clear, so
    that an erased one can be counted by the filters too (`dlq.Sifter`)."""
    if f.reasons and context.reason not in f.reasons:
        return False
    if f.topics and context.source_topic not in f.topics:
        return False
    if f.since or f.until:
        try:
            at = to_utc(datetime.fromisoformat(context.rejected_at))
        except ValueError:
            return False
        if (f.since and at < to_utc(f.since)) or (f.until and at > to_utc(f.until)):
            return False
    return True


def redriven_headers(letter: DeadLetter, set_headers: dict[str, str]) -> list[tuple[str, bytes | None]]:
    """Original headers minus `dlq.*` (and any overridden), plus `dlq.replayed=<partition:offset>` and when the
    original was written (`intake.written-at`): the replayed record is the data the citizen sent then, so one whose
    applicant was erased since is sealed erased (ADR 0042). Without it the replay counted as new data and was sealed
    under a new live key: an applicant with neither CCCD nor contact, whose letter was sealed under the day's key,
    which their erasure does not reach, came back readable (review). The time is the original's by the broker's clock
    (`dlq.source.written-at`), as the erasure's mark is (ADR 0043); a letter written before intake wrote it gives its
    rejection time, by intake's clock: one 91 s fast made a letter rejected 30 s before an erasure new data."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith("dlq.") and k not in set_headers]
    overrides: list[tuple[str, bytes | None]] = [(k, v.encode()) for k, v in set_headers.items()]
    written = letter.context.source_written_at
    if written is None:
        written = _ms(letter.context.rejected_at)
    return [*kept, *overrides, (Header.REPLAYED.value, letter.position.encode()),
            *([(WRITTEN_AT, str(written).encode())] if written is not None else [])]


def _ms(iso: str) -> int | None:
    try:
        return int(to_utc(datetime.fromisoformat(iso)).timestamp() * 1000)
    except (ValueError, OverflowError):
        return None
