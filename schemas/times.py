"""Date-time normalisation: every canonical time is timezone-aware UTC.

Commune software sends Vietnam-time strings, `yyyyMMddHHmmss` (the national
portal's form, e.g. "20251103081026") or ISO 8601 with or without an offset.
A time without an offset is Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")


def _compact_form(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 14 and value.isdigit():
        try:  # slicing, not strptime: this runs for most dates of every portal record
            return datetime(int(value[:4]), int(value[4:6]), int(value[6:8]),
                            int(value[8:10]), int(value[10:12]), int(value[12:14]))
        except ValueError:
            raise PydanticCustomError("invalid_datetime", "'{value}' is not a valid yyyyMMddHHmmss time", {"value": value}) from None
    return value


def to_utc(value: datetime) -> datetime:
    """Naive times are Vietnam time; aware ones keep their instant."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=VIETNAM)
    return value.astimezone(UTC)


def vietnam_date(value: datetime) -> date:
    """The calendar day in Vietnam on which an instant falls."""
    return value.astimezone(VIETNAM).date()


UtcDateTime = Annotated[
    datetime,
    BeforeValidator(_compact_form),
    AfterValidator(to_utc),
    Field(description="RFC 3339 time; on input also yyyyMMddHHmmss or ISO 8601 without offset (Asia/Ho_Chi_Minh)"),
]
