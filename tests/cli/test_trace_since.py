"""`trace --since` (and `?since=` at the gateway): the text of how far back to read, as epoch milliseconds for
Kafka's time index; anything else a ValueError that names the forms and never repeats what was given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.trace import since_ms

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", NOW - timedelta(days=30)),
    (" 12h ", NOW - timedelta(hours=12)),
    ("90m", NOW - timedelta(minutes=90)),
    ("2026-11-01", datetime(2026, 10, 31, 17, tzinfo=UTC)),  # naive: Vietnam time, as `dlq --since` reads it
    ("2026-11-01T08:00", datetime(2026, 11, 1, 1, tzinfo=UTC)),
    ("2026-11-01T08:00Z", datetime(2026, 11, 1, 8, tzinfo=UTC)),
    ("2026-11-01T08:00+09:00", datetime(2026, 10, 31, 23, tzinfo=UTC)),
])
def test_a_duration_ago_or_a_time(text: str, expected: datetime) -> None:
    assert since_ms(text, NOW) == ms(expected)


@pytest.mark.parametrize("text", ["1900-01-01", "99999d", "1900-01-01T00:00+14:00"])
def test_before_1970_reads_everything(text: str) -> None:
    """Never negative: Kafka's ListOffsets takes -1 for the end and -2 for the start, not for a time."""
    assert since_ms(text, NOW) == 0


@pytest.mark.parametrize("text", ["", "7w", "last tuesday", "2026-13-01", "30 d", "-3d", "x" * 100, "123456d",
                                  "0001-01-01"])  # year 1 in Vietnam time is before the first instant datetime holds
def test_anything_else_names_the_forms_without_echoing_it(text: str) -> None:
    with pytest.raises(ValueError, match="30d, 12h or 90m") as refused:
        since_ms(text, NOW)
    assert not text.strip() or text.strip() not in str(refused.value)


@given(st.text(max_size=60) | st.datetimes(timezones=st.none() | st.timezones()).map(datetime.isoformat)
       | st.from_regex(r"[0-9]{1,6}[dhmw]", fullmatch=True))
def test_any_text_is_a_time_from_1970_on_or_a_value_error(text: str) -> None:
    try:
        at = since_ms(text, NOW)
    except ValueError as refused:  # the only exception, and it names the forms
        assert "30d, 12h or 90m" in str(refused)
    else:
        assert at >= 0


def test_the_cli_refuses_a_bad_since_before_reading_anything() -> None:
    """Exit 2 with the forms named, and no broker asked (the bootstrap is a closed port)."""
    result = CliRunner().invoke(app, ["trace", "TL-1", "--since", "yesterday", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert "30d, 12h or 90m" in result.output


@pytest.mark.parametrize("text", ["9999-12-31", "2100-01-01T00:00+07:00"])
def test_the_cli_refuses_a_since_in_the_future_before_reading_anything(text: str) -> None:
    """A `--since` still to come: exit 2 saying so, no broker asked; it read every topic and said "nothing found" with
    exit 1, as if the record were nowhere (CLI trial)."""
    result = CliRunner().invoke(app, ["trace", "TL-1", "--since", text, "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert "a time still to come" in result.output
