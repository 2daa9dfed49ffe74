"""Dead-letter records: why a record was rejected, and where it came from.

A dead letter keeps the original record's key, value bytes and headers exactly,
and adds `dlq.*` headers (the Kafka Connect convention), so it can be read,
fixed and replayed without loss. Intake seals the original record whole (ADR 0015,
0026): `OriginalRecord.pack` is the layout of what it encrypts.
"""

from __future__ import annotations

import contextlib
import struct
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import orjson
from pydantic import BaseModel, ValidationError, field_validator

from schemas.lookup import lookup_id, lookup_name, lookup_trace_id


class Reason(StrEnum):
    """Machine-readable rejection reasons."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    WRONG_FAMILY = "wrong_family"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_FIELD = "unknown_field"
    UNKNOWN_STATUS = "unknown_status"
    UNKNOWN_COMMUNE = "unknown_commune"
    UNKNOWN_PROVINCE = "unknown_province"
    PROVINCE_MISMATCH = "province_mismatch"
    MISSING_COMMUNE_HEADER = "missing_commune_header"
    IMPOSSIBLE_DATES = "impossible_dates"
    DUPLICATE_EVENT = "duplicate_event"
    UNAUTHORISED_SOURCE = "unauthorised_source"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    """A time outside 1975-2100 (`schemas.limits`)."""
    TOO_DEEP = "too_deep"
    """JSON nested deeper than `schemas.limits.MAX_DEPTH`."""
    TOO_LARGE = "too_large"
    """A JSON array longer than `schemas.limits.MAX_ITEMS`."""
    INTERNAL_ERROR = "internal_error"
    """Handling this one record raised unexpectedly (a bug): the record is set aside, processing goes on."""


class Header(StrEnum):
    REASON = "dlq.reason"
    FIELD = "dlq.field"
    MESSAGE = "dlq.message"
    SOURCE_TOPIC = "dlq.source.topic"
    SOURCE_PARTITION = "dlq.source.partition"
    SOURCE_OFFSET = "dlq.source.offset"
    REJECTED_AT = "dlq.rejected.at"
    SOURCE_WRITTEN_AT = "dlq.source.written-at"
    REPLAYED = "dlq.replayed"
    LOOKUP_ID = "dlq.lookup.id"
    LOOKUP_SUBJECT = "dlq.lookup.subject"
    LOOKUP_DOSSIER = "dlq.lookup.dossier"
    LOOKUP_TRACE = "dlq.lookup.trace"
    PROBLEMS = "dlq.problems"


HEADER_NOTES: dict[Header, str] = {
    Header.SOURCE_WRITTEN_AT: "When the original was written to Kafka, in ms since the epoch, by the broker's clock "
    "(its append time, or its own original's, `intake.written-at`): what `dlq replay` dates the replayed record by "
    "(ADR 0043). Absent on dead letters written before 2026-12-06; a time identifies nobody.",
    Header.REPLAYED: "Set on a record re-driven from the DLQ into a raw topic: the partition and offset of the dead "
    "letter it came from, `<partition>:<offset>`.",
    Header.LOOKUP_ID: "The event id the record carries (a portal payload: the id intake derives), when it identifies "
    "nobody (`schemas.lookup`, ADR 0038): what `commune-bus trace` finds the dead letter by without the raw topics.",
    Header.LOOKUP_SUBJECT: "The record's subject (a dossier code; the portal's `MaHoSo`), when it identifies nobody "
    "(ADR 0038).",
    Header.LOOKUP_DOSSIER: "The dossier code in the record's data (`dossier_code`), when it is not the subject and "
    "identifies nobody.",
    Header.LOOKUP_TRACE: "The 32-hex trace id intake gives the record's event (its valid traceparent's, else the one "
    "derived from its source and id), when nothing personal can be in it (ADR 0038).",
    Header.PROBLEMS: "Every problem intake found in the record when it found more than one, in compact JSON: an array "
    "of {reason, field, message}, the first that of dlq.reason/field/message, at most 21 (the 21st, field `(record)`, "
    "counts those not listed), each field cut at 200 characters and message at 300. Absent with one, or before "
    "2026-12-06. Messages name fields, not their values (times aside: impossible_dates gives both, in UTC).",
}
"""What some headers mean, as the published schema says it (a string under an enum member is no docstring: the
schema said "None" for each until 2026-12-06)."""


_WRITTEN = frozenset(h.value for h in Header)


class Rejection(BaseModel, frozen=True):
    """Why one record was rejected. `message` names the field and never echoes personal data."""

    reason: Reason
    field: str
    message: str


MAX_PROBLEMS: Final = 20
"""Problems listed per record, then one entry counting the rest (`services.intake.outcome.from_validation`)."""
FIELD_CHARS, MESSAGE_CHARS = 200, 300
"""`dlq.problems` cuts a field and a message past these: 21 take ~12 KB (`schemas.topics.DEAD_LETTER_HEADROOM`)."""


def problems_header(problems: Sequence[Rejection]) -> bytes:
    return orjson.dumps([{"reason": p.reason.value, "field": p.field[:FIELD_CHARS],
                          "message": p.message[:MESSAGE_CHARS]} for p in problems[:MAX_PROBLEMS + 1]])


def _problems(value: bytes | None) -> tuple[Rejection, ...]:
    """`dlq.problems` read, never hiding the letter: entries intake writes (2 or more, cut), others left out."""
    entries: object = ()
    with contextlib.suppress(orjson.JSONDecodeError):
        entries = orjson.loads(value or b"")
    problems = []
    for entry in entries[:MAX_PROBLEMS + 1] if isinstance(entries, list) else ():
        with contextlib.suppress(ValidationError):
            p = Rejection.model_validate(entry)
            problems += [p] if len(p.field) <= FIELD_CHARS and len(p.message) <= MESSAGE_CHARS else []
    return tuple(problems) if len(problems) > 1 else ()


def _source_path(filename: str) -> str:
    """The project-relative path of a source file (`services/...`, `schemas/...`), else its name."""
    parts = Path(filename).parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in ("services", "schemas"):
            return "/".join(parts[i:])
    return Path(filename).name


def internal_error(exc: BaseException) -> Rejection:
    """The rejection of a record whose handling raised `exc` unexpectedly.

    The message is the exception's type and the innermost frame (file:line) only: never its text,
    which may quote the record.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {_source_path(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    return Rejection(reason=Reason.INTERNAL_ERROR, field="(record)",
                     message=f"internal error: {type(exc).__name__}{where}")


class DeadLetterContext(BaseModel, frozen=True):
    """The `dlq.*` headers of a dead letter, typed. The `lookup_*` names are what `commune-bus trace` finds it by
    without reading the raw topics (ADR 0038): intake sets each it could read from the record in a shape that
    identifies nobody (`schemas.lookup`); a dead letter written before has none."""

    reason: Reason
    field: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    rejected_at: str
    source_written_at: int | None = None
    lookup_id: str | None = None
    lookup_subject: str | None = None
    lookup_dossier: str | None = None
    lookup_trace: str | None = None
    problems: tuple[Rejection, ...] = ()
    """Every problem found when more than one (`Header.PROBLEMS`), else none (`all_problems` gives one then)."""

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes | None]]) -> DeadLetterContext:
        # the headers intake wrote; one of another `dlq.` name copied from the original record may be anything
        h = {k: v.decode("utf-8", "replace") for k, v in headers if k in _WRITTEN and isinstance(v, bytes)}
        # the original's written time only from intake's own block (from the last `dlq.reason`): on a letter written
        # before intake wrote it, one the original record carried is its producer's, and would date a replay anywhere
        block = max((i for i, (k, _) in enumerate(headers) if k == Header.REASON), default=len(headers))
        written = [v for k, v in headers[block:] if k == Header.SOURCE_WRITTEN_AT and isinstance(v, bytes)]
        listed = [v for k, v in headers[block:] if k == Header.PROBLEMS]  # from intake's block too: as written-at
        # digits only: any other value is absent (replay falls back on the rejection time), never an error that
        # would hide the dead letter
        ms = int(written[-1]) if written and written[-1].isdigit() and len(written[-1]) <= 15 else None
        return cls(
            reason=Reason(h[Header.REASON]), field=h.get(Header.FIELD, ""), message=h.get(Header.MESSAGE, ""),
            source_topic=h[Header.SOURCE_TOPIC], source_partition=int(h[Header.SOURCE_PARTITION]),
            source_offset=int(h[Header.SOURCE_OFFSET]), rejected_at=h.get(Header.REJECTED_AT, ""),
            source_written_at=ms,
            lookup_id=h.get(Header.LOOKUP_ID), lookup_subject=h.get(Header.LOOKUP_SUBJECT),
            lookup_dossier=h.get(Header.LOOKUP_DOSSIER), lookup_trace=h.get(Header.LOOKUP_TRACE),
            problems=_problems(listed[-1]) if listed else (),
        )

    @field_validator("lookup_id", mode="before")
    @classmethod
    def _closed_id(cls, value: object) -> str | None:
        return lookup_id(value)

    @field_validator("lookup_subject", "lookup_dossier", mode="before")
    @classmethod
    def _closed_name(cls, value: object) -> str | None:
        """Only in its closed shape (`schemas.lookup`): any other (a forged header on a letter never sealed, a
        producer's text) is absent, never an error that would hide the dead letter."""
        return lookup_name(value)

    @field_validator("lookup_trace", mode="before")
    @classmethod
    def _trace_id(cls, value: object) -> str | None:
        return lookup_trace_id(value)

    def lookups(self) -> tuple[str, ...]:
        """The names it can be found by (`lookup_*`), those it has."""
        return tuple(n for n in (self.lookup_id, self.lookup_subject, self.lookup_dossier, self.lookup_trace) if n)

    def all_problems(self) -> tuple[Rejection, ...]:
        """Every problem the dead letter names: its reason, field and message (with intake's notes), then the rest."""
        return (Rejection(reason=self.reason, field=self.field, message=self.message), *self.problems[1:])

    def headers(self) -> list[tuple[str, bytes]]:
        lookups = ((Header.LOOKUP_ID, self.lookup_id), (Header.LOOKUP_SUBJECT, self.lookup_subject),
                   (Header.LOOKUP_DOSSIER, self.lookup_dossier), (Header.LOOKUP_TRACE, self.lookup_trace))
        return [
            (Header.REASON.value, self.reason.value.encode()),
            (Header.FIELD.value, self.field.encode()),
            (Header.MESSAGE.value, self.message.encode()),
            (Header.SOURCE_TOPIC.value, self.source_topic.encode()),
            (Header.SOURCE_PARTITION.value, str(self.source_partition).encode()),
            (Header.SOURCE_OFFSET.value, str(self.source_offset).encode()),
            (Header.REJECTED_AT.value, self.rejected_at.encode()),
            *(((Header.SOURCE_WRITTEN_AT.value, str(self.source_written_at).encode()),)
              if self.source_written_at is not None else ()),
            *((name.value, value.encode()) for name, value in lookups if value is not None),
            *(((Header.PROBLEMS.value, problems_header(self.problems)),) if len(self.problems) > 1 else ()),
        ]


_LENGTH = struct.Struct(">I")
_NULL = 0xFFFFFFFF
"""The length that stands for a null key, value or header value (Kafka allows each to be null)."""
Headers = list[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class OriginalRecord:
    """A record as it reached intake (key, value, headers; any of the bytes may be null), for a sealed dead letter.

    `pack` is layout `record.v1` (`schemas.personal.RECORD_LAYOUT`): each item a 4-byte big-endian length
    (0xFFFFFFFF = null) then its bytes, in this order: key, number of headers, each header's name (UTF-8; a lone
    surrogate kept by `surrogatepass`) and value, then the value. Binary (no base64): dead letters run to 10 MiB.
    """

    key: bytes | None
    value: bytes | None
    headers: Headers

    def pack(self) -> bytes:
        parts = [_item(self.key), _LENGTH.pack(len(self.headers))]
        for name, value in self.headers:
            parts += (_item(name.encode("utf-8", "surrogatepass")), _item(value))
        parts.append(_item(self.value))
        return b"".join(parts)

    @classmethod
    def unpack(cls, packed: bytes) -> OriginalRecord:
        """The record `pack` gave `packed`; ValueError if it is not such bytes (truncated, trailing, malformed)."""
        view = memoryview(packed)
        key, at = _read(view, 0)
        headers: Headers = []
        count, at = _length(view, at), at + 4
        for _ in range(count):
            name, at = _read(view, at)
            value, at = _read(view, at)
            if name is None:
                raise ValueError("a header without a name")
            headers.append((name.decode("utf-8", "surrogatepass"), value))
        value, at = _read(view, at)
        if at != len(view):
            raise ValueError("bytes after the record")
        return cls(key, value, headers)


def _item(data: bytes | None) -> bytes:
    return _LENGTH.pack(_NULL) if data is None else _LENGTH.pack(len(data)) + data


def _length(view: memoryview, at: int) -> int:
    if len(view) < at + 4:
        raise ValueError("the record ends too early")
    length: int = _LENGTH.unpack_from(view, at)[0]
    return length


def _read(view: memoryview, at: int) -> tuple[bytes | None, int]:
    length = _length(view, at)
    if length == _NULL:
        return None, at + 4
    end = at + 4 + length
    if end > len(view):
        raise ValueError("the record ends too early")
    return bytes(view[at + 4:end]), end
