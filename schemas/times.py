"""Date-time normalisation: every canonical time is timezone-aware UTC.

Commune software sends Vietnam-time strings, `yyyyMMddHHmmss` (the national
portal's form, e.g. "20251103081026") or ISO 8601 with or without an offset.
A time without an offset is Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter
from pydantic_core import PydanticCustomError

from schemas.limits import DATE_RANGE, EARLIEST, LATEST

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
FUTURE_MARGIN: Final = timedelta(hours=1)
"""How far ahead of a consumer's clock an event time is still believed for ordering. Intake accepts times up to
2100, so a sender's wrong clock or a mistyped year (2052 for 2025) would otherwise make that event the newest of
its entity for decades: metrics orders such an event before every believable one (`services.metrics.state`);
notify's deadline tracker applies the same rule (`services.notify.deadlines.FUTURE_MARGIN`)."""


_MODERN = 1976
"""Since 13 June 1975 Asia/Ho_Chi_Minh is UTC+07:00 all year (no DST), so later times need no tz database."""
_MODERN_YEAR = str(_MODERN)
_OFFSET = timedelta(hours=7)


def is_compact(value: Any) -> bool:
    """The national portal's yyyyMMddHHmmss form (such strings sort as their times do)."""
    return isinstance(value, str) and len(value) == 14 and value.isdigit()


def is_canonical_text(value: Any) -> bool:
    """The form every canonical time is written in, `YYYY-MM-DDTHH:MM:SSZ` (separators checked here, digits by
    `datetime.fromisoformat`'s C parser, which takes ASCII digits only)."""
    return (type(value) is str and len(value) == 20 and value[19] == "Z" and value[10] == "T"
            and value[4] == value[7] == "-" and value[13] == value[16] == ":")


def _compact_form(value: Any) -> Any:
    """Before pydantic's own parsing: the two forms parsed here directly, numbers refused, anything else left to
    pydantic.

    The canonical `...Z` form (every time of every canonical event) becomes a UTC `datetime` here, at C speed
    (pydantic would give it its own `TzInfo`, which `_canonical` must then convert: 1 µs a field); a string of
    that shape `fromisoformat` refuses (month 13, second 60) goes to pydantic, whose answer stands. A test holds
    both paths equal (hypothesis).
    """
    if is_canonical_text(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    if is_compact(value):
        # the portal's form, in most dates of every portal record: C-level ISO parsing, not strptime
        modern = value[:4] >= _MODERN_YEAR
        try:
            parsed = datetime.fromisoformat(f"{value[:8]}T{value[8:]}{'+07:00' if modern else ''}")
        except ValueError:
            raise PydanticCustomError("invalid_datetime", "not a valid yyyyMMddHHmmss time") from None
        return parsed.astimezone(UTC) if modern else parsed
    if isinstance(value, int | float) or (type(value) is str and _is_number_text(value)):
        # pydantic would read it as Unix seconds or milliseconds in UTC: "2025110717" (the portal's form cut
        # short) would become 2034, a JSON number a time no rule of ours allows (the JSON Schema says string)
        raise PydanticCustomError("invalid_datetime", "a number, not a yyyyMMddHHmmss or ISO 8601 time"
                                  if not isinstance(value, str) else NOT_FOURTEEN_DIGITS)
    return value


NOT_FOURTEEN_DIGITS: Final = "digits, not a yyyyMMddHHmmss time (14 digits) or an ISO 8601 one"
"""A time sent as a string of digits of another length, or with a sign or a decimal point ("20251107", "0987654321"):
it said "a number" of a string (walkthrough, 2026-12-05)."""


def _is_number_text(value: str) -> bool:
    """A decimal number (optional sign, digits, optional fraction), which no time form of ours is."""
    unsigned = value[1:] if value[:1] in ("+", "-") else value
    return unsigned.replace(".", "", 1).isdigit()


def to_utc(value: datetime) -> datetime:
    """Naive times are Vietnam time; aware ones keep their instant.

    A time whose instant falls outside what `datetime` holds (year 1 east of UTC, year 9999 west
    of it) raises PydanticCustomError `value_out_of_range`, never OverflowError.
    """
    try:
        if value.tzinfo is None:
            if value.year >= _MODERN:
                return (value - _OFFSET).replace(tzinfo=UTC)
            value = value.replace(tzinfo=VIETNAM)
        return value.astimezone(UTC)
    except OverflowError:
        raise _out_of_range() from None


def _out_of_range() -> PydanticCustomError:
    return PydanticCustomError("value_out_of_range", "time is outside the years 1975 to 2100 (UTC)")


def _canonical(value: datetime) -> datetime:
    """`to_utc(value)`, refused outside `schemas.limits` EARLIEST..LATEST with no value in the error, in one call (a
    `UtcDateTime` field runs it for every time of every record)."""
    tz = value.tzinfo
    if tz is UTC:  # the portal's compact form arrives converted already
        utc = value
    elif tz is None and value.year >= _MODERN:
        utc = (value - _OFFSET).replace(tzinfo=UTC)
    else:
        utc = to_utc(value)
    if EARLIEST <= utc <= LATEST:
        return utc
    raise _out_of_range()


def vietnam_date(value: datetime) -> date:
    """The calendar day in Vietnam on which an instant falls."""
    if value.tzinfo is UTC and value.year >= _MODERN:  # a fixed +07:00 since 1975: no tz database lookup
        return (value + _OFFSET).date()
    return value.astimezone(VIETNAM).date()


_DAY_S = 86_400
_OFFSET_S = 7 * 3600


def overdue_from(due_at: datetime) -> datetime:
    """The first instant at which an open dossier due at `due_at` is overdue: the start of the next Vietnam day
    (00:00 UTC+07:00), whatever time of day the due date carries. Timeliness compares Vietnam calendar days
    (`schemas.dossier.timeliness_of`), so a dossier due on 6 November at 17:00 and finished at 19:30 that day is on
    time: it is not overdue at 18:00 either, only once a finish would be late. It was overdue from its due time
    (metrics audit), and for a date without a time of day (local midnight) from the day's first minute (time audit).
    """
    return datetime.combine(vietnam_date(due_at) + timedelta(days=1), time(), VIETNAM).astimezone(UTC)


def overdue_from_s(due_s: int) -> int:
    """`overdue_from` in epoch seconds (a due date of 1976 on: UTC+07:00 all year)."""
    return due_s - (due_s + _OFFSET_S) % _DAY_S + _DAY_S


UtcDateTime = Annotated[
    datetime,
    BeforeValidator(_compact_form),
    AfterValidator(_canonical),
    Field(description="RFC 3339 time, 1975 to 2100; on input also yyyyMMddHHmmss or ISO 8601 without offset "
                      "(Asia/Ho_Chi_Minh)", json_schema_extra=DATE_RANGE),
]


_ADAPTER = TypeAdapter(Annotated[datetime, BeforeValidator(_compact_form), AfterValidator(to_utc)])


def parse_utc(value: Any) -> datetime:
    """One value validated as a `UtcDateTime` field would be, outside a model.

    The portal's yyyyMMddHHmmss form is parsed here directly (no validator round trip);
    raises pydantic's ValidationError or PydanticCustomError. Unlike a `UtcDateTime` field it takes any
    time `datetime` holds; one it cannot hold in UTC is `value_out_of_range`.
    """
    compact = _compact_form(value)
    if isinstance(compact, datetime):
        return to_utc(compact)
    return _ADAPTER.validate_python(value)
