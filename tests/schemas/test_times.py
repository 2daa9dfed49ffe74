"""Time normalisation against the tz database: the fast paths must give the same instants."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, get_args, get_origin
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel, BeforeValidator, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError
from schema_samples import DATA, sample

from schemas.deadletter import Reason
from schemas.events import EVENT_TYPES, FAMILY_OF_TYPE
from schemas.limits import EARLIEST, LATEST
from schemas.times import (
    NOT_FOURTEEN_DIGITS,
    UtcDateTime,
    _canonical,
    _compact_form,
    is_canonical_text,
    overdue_from,
    overdue_from_s,
    parse_utc,
    to_utc,
    vietnam_date,
)
from services.intake.normalise import normalise
from services.intake.outcome import Accepted, Rejected

pytestmark = pytest.mark.unit

HO_CHI_MINH = ZoneInfo("Asia/Ho_Chi_Minh")


def _instants(n: int) -> list[datetime]:
    rng = random.Random(20251103)
    return [datetime(rng.randint(1900, 2100), rng.randint(1, 12), rng.randint(1, 28),
                     rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)) for _ in range(n)]


def test_vietnam_times_match_the_tz_database_before_and_after_1975() -> None:
    """Before 1975 Vietnam's offset changed several times; the fixed +07:00 shortcut is used only after."""
    for naive in _instants(5000):
        want = naive.replace(tzinfo=HO_CHI_MINH).astimezone(UTC)
        assert parse_utc(naive.strftime("%Y%m%d%H%M%S")) == want, naive
        assert parse_utc(naive.isoformat()) == want, naive
        assert to_utc(naive) == want, naive
        assert parse_utc(naive.strftime("%Y%m%d%H%M%S")).tzinfo is UTC


def test_aware_times_keep_their_instant() -> None:
    assert parse_utc("2025-11-03T08:10:26Z") == datetime(2025, 11, 3, 8, 10, 26, tzinfo=UTC)
    assert parse_utc("2025-11-03T08:10:26-05:00") == datetime(2025, 11, 3, 13, 10, 26, tzinfo=UTC)


@pytest.mark.parametrize("value", ["20251303081026", "20250230081026", "20251103246026"])
def test_impossible_compact_times_are_errors(value: str) -> None:
    with pytest.raises(PydanticCustomError, match="not a valid yyyyMMddHHmmss time"):
        parse_utc(value)


def test_other_garbage_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        parse_utc("next tuesday")


# -- the fast paths against pydantic's own parsing and the tz database (hypothesis) -----------------------------
_PYDANTIC_ONLY = TypeAdapter(Annotated[datetime, AfterValidator(_canonical)])
"""A `UtcDateTime` without its fast paths: pydantic parses every string, `_canonical` bounds and converts."""
_UTC_DATETIME = TypeAdapter(UtcDateTime)
_SHAPE = "0000-00-00T00:00:00Z"


def _outcome(adapter: TypeAdapter[datetime], value: str) -> tuple[str, object]:
    try:
        parsed = adapter.validate_python(value)
    except ValidationError as exc:
        return "error", exc.errors()[0]["type"]
    return "value", (parsed, parsed.tzinfo is UTC)


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
@settings(max_examples=500, deadline=None)
def test_canonical_text_parses_as_pydantic_parses_it(moment: datetime) -> None:
    """Every time in canonical form: the same instant (as `datetime.UTC`), or the same error, both ways."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment.year >= 1000 else f"{moment.year:04d}" + moment.strftime(
        "-%m-%dT%H:%M:%SZ")
    assert is_canonical_text(text)
    assert _outcome(_UTC_DATETIME, text) == _outcome(_PYDANTIC_ONLY, text)
    assert _outcome(_UTC_DATETIME, text)[0] == "value" or not EARLIEST <= moment.replace(tzinfo=UTC) <= LATEST


_DIGIT = st.sampled_from("0123456789" * 4 + "٣ \x00")
"""A digit's place: mostly ASCII digits (a valid date now and then), sometimes a Unicode digit or junk."""


def _separator(ch: str) -> st.SearchStrategy[str]:
    return st.sampled_from([ch] * 12 + ["-", "T", ":", "Z", "t", "z", " ", "+", "0"])


@given(st.tuples(*(_DIGIT if ch == "0" else _separator(ch) for ch in _SHAPE)))
@settings(max_examples=2000, deadline=None)
def test_strings_of_the_canonical_shape_parse_as_pydantic_parses_them(chars: tuple[str, ...]) -> None:
    """ASCII digits or not in the digits' places, mostly the right separators: the fast path never accepts what
    pydantic refuses, nor reads a string otherwise (a string it refuses goes on to pydantic)."""
    text = "".join(chars)
    assert _outcome(_UTC_DATETIME, text) == _outcome(_PYDANTIC_ONLY, text)


_LENIENT = ["2025-11-03X08:10:26Z", "2025-11-03-08:10:26Z", "2025-11-03008:10:26Z", "2025-11-03T08:10.26Z",
            "2025-11-03T08:10,26Z", "2025-11-03T08:10:26\x00"]
"""Strings of the canonical shape that `datetime.fromisoformat` reads and RFC 3339 (and pydantic) does not: any
character between date and time, `08:10.26` as 08:10:00.26, a NUL for the `Z` (a naive time, then read as Vietnam's).
Drawn at random the property above meets them about once in 50,000 examples: every separator check of the fast path
could be dropped and it still passed (mutation test)."""


@pytest.mark.parametrize("text", _LENIENT)
def test_a_time_only_fromisoformat_would_read_is_refused(text: str) -> None:
    """The fast path hands such a string to pydantic, which refuses it: intake never takes it as some other time."""
    assert _outcome(_UTC_DATETIME, text) == _outcome(_PYDANTIC_ONLY, text)
    assert _outcome(_UTC_DATETIME, text)[0] == "error"


@pytest.mark.parametrize(("text", "accepted"), [
    ("1975-01-01T00:00:00Z", True), ("1975-01-01T07:00:00+07:00", True), ("1974-12-31T23:59:59.999999Z", False),
    ("2100-12-31T23:59:59.999999Z", True), ("2101-01-01T06:59:59.999999+07:00", True), ("2101-01-01T00:00:00Z", False),
    ("19750101080000", True), ("19750101075959", False), ("21010101065959", True), ("21010101070000", False),
])
def test_the_range_of_times_includes_both_ends_as_the_json_schema_says(text: str, accepted: bool) -> None:
    """`formatMinimum`/`formatMaximum` (`schemas.limits.DATE_RANGE`) are inclusive: a sender checking its record against
    the published schema has its first and last instants accepted, one microsecond beyond them refused (the portal's
    form is Vietnam time: UTC+08:00 until June 1975, UTC+07:00 since)."""
    outcome = _outcome(_UTC_DATETIME, text)
    assert outcome[0] == ("value" if accepted else "error"), outcome
    if not accepted:
        assert outcome[1] == "value_out_of_range"


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
@settings(max_examples=500, deadline=None)
@example(datetime(1975, 3, 1, 16, 30, tzinfo=UTC))  # 00:30 on 2 March in Vietnam, then UTC+08:00
@example(datetime(2025, 11, 3, 20, 0, tzinfo=HO_CHI_MINH))  # an aware time not in UTC: no +07:00 added to it
def test_vietnam_date_matches_the_tz_database(moment: datetime) -> None:
    """The fast path (UTC, 1976 on) and the tz database give the same day; random draws seldom hit the hour of 1975
    where the two offsets differ, nor a time not in UTC, hence the examples (mutation test)."""
    assert vietnam_date(moment) == moment.astimezone(HO_CHI_MINH).date()


# -- a time is text: numbers are never read as Unix epoch times -------------------------------------------------
_NUMBERS = [1762157426, 1762157426.5, 1762157426000, 0, "2025110717", "202511030810", "1762506000", "+1762506000",
            "-1762506000", "1762506000.5", "0", "2025110308102"]
"""What pydantic alone reads as Unix seconds or milliseconds in UTC: numbers, and digit strings that are not the
portal's 14-digit form (the form cut short: "2025110717" was 2034-03-04, "202511030810" 1976-06-01)."""


@pytest.mark.parametrize("value", _NUMBERS)
def test_numbers_and_digit_strings_other_than_yyyymmddhhmmss_are_not_times(value: object) -> None:
    """A JSON number or a number as text is invalid_datetime, in a field (JSON or Python input) and in parse_utc."""
    with pytest.raises(PydanticCustomError) as caught:
        parse_utc(value)
    assert caught.value.type == "invalid_datetime"
    for validate in (_UTC_DATETIME.validate_python, lambda v: _UTC_DATETIME.validate_json(orjson.dumps(v))):
        with pytest.raises(ValidationError) as failed:
            validate(value)
        assert failed.value.errors()[0]["type"] == "invalid_datetime"
        said = NOT_FOURTEEN_DIGITS if isinstance(value, str) else "a number, not a yyyyMMddHHmmss or ISO 8601 time"
        assert failed.value.errors()[0]["msg"] == said  # no value


def _unchecked_times(annotation: object, where: str, seen: set[type]) -> Iterator[str]:
    """Where a `datetime` is read without `UtcDateTime`'s rule, in `annotation` and the models it holds."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        if base is datetime:
            if not any(isinstance(m, BeforeValidator) and m.func is _compact_form for m in meta):
                yield where
            return
        annotation = base
    if annotation is datetime:
        yield where
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return
        seen.add(annotation)
        for name, info in annotation.model_fields.items():
            if info.annotation is datetime:  # `x: UtcDateTime`: pydantic keeps the validators as the field's metadata
                if not any(isinstance(m, BeforeValidator) and m.func is _compact_form for m in info.metadata):
                    yield f"{where}.{name}"
            else:
                yield from _unchecked_times(info.annotation, f"{where}.{name}", seen)
    else:
        for arg in get_args(annotation):
            yield from _unchecked_times(arg, where, seen)


def test_every_time_of_every_event_type_is_read_by_the_same_rule() -> None:
    """Every `datetime` of every registered event (envelope, data, nested lists) is a `UtcDateTime`."""
    assert EVENT_TYPES
    found = {name: list(_unchecked_times(model, name, set())) for name, model in EVENT_TYPES.items()}
    assert {name: where for name, where in found.items() if where} == {}


@pytest.mark.parametrize("type_name", sorted(DATA))
def test_a_number_in_any_time_of_a_canonical_event_is_invalid_field(type_name: str) -> None:
    """Intake refuses the event time and each data time given as a JSON number or as digits, naming the field."""
    event = sample(type_name)
    times = ["time"] + [f"data.{k}" for k, v in event["data"].items() if isinstance(v, str) and _ISO.fullmatch(v)]
    assert len(times) > 1
    for where in times:
        for value in (1762157426, "2025110717"):
            bad = {**event, "data": dict(event["data"])}
            if where == "time":
                bad["time"] = value
            else:
                bad["data"][where.removeprefix("data.")] = value
            outcome = normalise(FAMILY_OF_TYPE[type_name], orjson.dumps(bad))
            assert isinstance(outcome, Rejected), (where, value)
            assert (outcome.rejection.reason, outcome.rejection.field) == (Reason.INVALID_FIELD, where)
    assert isinstance(normalise(FAMILY_OF_TYPE[type_name], orjson.dumps(event)), Accepted)


_ISO = re.compile(r"\d{4}-\d\d-\d\dT[\d:]{8}(Z|[+-]\d\d:\d\d)?")


@given(st.datetimes(min_value=datetime(1976, 1, 1), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)),
       st.booleans())
def test_overdue_from_in_seconds_is_overdue_from_in_datetimes(due: datetime, midnight: bool) -> None:
    """`overdue_from_s` (metrics, epoch seconds) and `overdue_from` (notify, datetimes) agree, and both are the start
    of the Vietnam day after the due day, whatever time of day the due date carries (a local midnight too)."""
    if midnight:
        due = datetime.combine(vietnam_date(due), datetime.min.time(), HO_CHI_MINH).astimezone(UTC)
    due = due.replace(microsecond=0)
    start = overdue_from(due)
    assert overdue_from_s(int(due.timestamp())) == int(start.timestamp())
    assert start.astimezone(HO_CHI_MINH).time() == datetime.min.time()
    assert vietnam_date(start) == vietnam_date(due) + timedelta(days=1)
    assert vietnam_date(start - timedelta(microseconds=1)) == vietnam_date(due)
