"""Dead-letter records: why a record was rejected, and where it came from.

A dead letter keeps the original record's key, value bytes and headers exactly,
and adds `dlq.*` headers (the Kafka Connect convention), so it can be read,
fixed and replayed without loss.
"""

from __future__ import annotations

import traceback
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel


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
    REPLAYED = "dlq.replayed"
    """Set on a record re-driven from the DLQ into a raw topic: the DLQ offset it came from."""


_WRITTEN = frozenset(h.value for h in Header)


class Rejection(BaseModel, frozen=True):
    """Why one record was rejected. `message` names the field and never echoes personal data."""

    reason: Reason
    field: str
    message: str


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
    """The `dlq.*` headers of a dead letter, typed."""

    reason: Reason
    field: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    rejected_at: str

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> DeadLetterContext:
        # the headers intake wrote; one of another `dlq.` name copied from the original record may be anything
        h = {k: v.decode("utf-8", "replace") for k, v in headers if k in _WRITTEN and isinstance(v, bytes)}
        return cls(
            reason=Reason(h[Header.REASON]), field=h.get(Header.FIELD, ""), message=h.get(Header.MESSAGE, ""),
            source_topic=h[Header.SOURCE_TOPIC], source_partition=int(h[Header.SOURCE_PARTITION]),
            source_offset=int(h[Header.SOURCE_OFFSET]), rejected_at=h.get(Header.REJECTED_AT, ""),
        )

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (Header.REASON.value, self.reason.value.encode()),
            (Header.FIELD.value, self.field.encode()),
            (Header.MESSAGE.value, self.message.encode()),
            (Header.SOURCE_TOPIC.value, self.source_topic.encode()),
            (Header.SOURCE_PARTITION.value, str(self.source_partition).encode()),
            (Header.SOURCE_OFFSET.value, str(self.source_offset).encode()),
            (Header.REJECTED_AT.value, self.rejected_at.encode()),
        ]
