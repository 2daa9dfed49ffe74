"""Date-time normalisation: every canonical time is timezone-aware UTC.

Commune software sends Vietnam-time strings, `yyyyMMddHHmmss` (the national
portal's form, e.g. "20251103081026") or ISO 8601 with or without an offset.
A time without an offset is Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter
from pydantic_core import PydanticCustomError

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")


_MODERN = 1976
"""Since 13 June 1975 Asia/Ho_Chi_Minh is UTC+07:00 all year (no DST), so later times need no tz database."""
_MODERN_YEAR = str(_MODERN)
_OFFSET = timedelta(hours=7)


def is_compact(value: Any) -> bool:
    """The national portal's yyyyMMddHHmmss form (such strings sort as their times do)."""
    return isinstance(value, str) and len(value) == 14 and value.isdigit()


def _compact_form(value: Any) -> Any:
    if is_compact(value):
        # the portal's form, in most dates of every portal record: C-level ISO parsing, not strptime
        modern = value[:4] >= _MODERN_YEAR
        try:
            parsed = datetime.fromisoformat(f"{value[:8]}T{value[8:]}{'+07:00' if modern else ''}")
        except ValueError:
            raise PydanticCustomError(
                "invalid_datetime", "'{value}' is not a valid yyyyMMddHHmmss time", {"value": value}) from None
        return parsed.astimezone(UTC) if modern else parsed
    return value


def to_utc(value: datetime) -> datetime:
    """Naive times are Vietnam time; aware ones keep their instant."""
    if value.tzinfo is None:
        if value.year >= _MODERN:
            return (value - _OFFSET).replace(tzinfo=UTC)
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


_ADAPTER = TypeAdapter(UtcDateTime)


def parse_utc(value: Any) -> datetime:
    """One value validated as a `UtcDateTime` field would be, outside a model.

    The portal's yyyyMMddHHmmss form is parsed here directly (no validator round trip);
    raises pydantic's ValidationError or PydanticCustomError.
    """
    compact = _compact_form(value)
    if isinstance(compact, datetime):
        return to_utc(compact)
    return _ADAPTER.validate_python(value)
