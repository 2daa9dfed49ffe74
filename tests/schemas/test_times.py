"""Time normalisation against the tz database: the fast paths must give the same instants."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from schemas.times import parse_utc, to_utc

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
