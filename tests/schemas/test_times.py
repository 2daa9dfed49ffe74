"""Time normalisation against the tz database: the fast paths must give the same instants."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from schemas.limits import EARLIEST, LATEST
from schemas.times import UtcDateTime, _canonical, is_canonical_text, parse_utc, to_utc, vietnam_date

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


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
@settings(max_examples=500, deadline=None)
def test_vietnam_date_matches_the_tz_database(moment: datetime) -> None:
    assert vietnam_date(moment) == moment.astimezone(HO_CHI_MINH).date()
