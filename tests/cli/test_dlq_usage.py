"""`dlq list|replay` refuse options that cannot mean what the operator wants with a usage error (exit 2), before
anything is read or written: a `--set-header` that is no K=V, an `--until` before `--since`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from services.cli import dlq
from services.cli.deadletters import Filters
from services.cli.main import app

pytestmark = pytest.mark.unit


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The DLQ, read in memory: empty; each read is recorded."""
    calls: list[object] = []

    async def dead_letters(*args: Any) -> dlq.Listing:
        calls.append(args)
        return dlq.Listing("commune.dlq.intake", [], set(), 0, 0)

    monkeypatch.setattr(dlq, "dead_letters", dead_letters)
    return calls


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["dlq", *args, "--bootstrap", "127.0.0.1:1"], env={"COLUMNS": "300"})


@pytest.mark.parametrize("header", ["commune-code:02269", "nonsense", "=02269", ""])
def test_a_set_header_that_is_no_key_value_is_refused_before_reading(reads: list[object], header: str) -> None:
    """`--set-header commune-code:02269` (a typo) or one without a key: exit 2 naming the option, the DLQ never read
    (before: dropped without a word, and the one replay of those letters spent without the fix)."""
    result = run("replay", "--set-header", "commune-code=02269", "--set-header", header)
    assert result.exit_code == 2, result.output
    assert "--set-header" in result.output and "K=V" in result.output
    assert reads == []


def test_a_well_formed_set_header_is_taken(reads: list[object]) -> None:
    """K=V with an `=` in the value and an empty value are taken as they are."""
    result = run("replay", "--dry-run", "--set-header", "commune-code=02269", "--set-header", "x-note=a=b",
                 "--set-header", "x-empty=")
    assert result.exit_code == 0, result.output
    assert len(reads) == 1


@pytest.mark.parametrize("command", [["list"], ["replay", "--dry-run"]])
def test_until_before_since_is_refused(reads: list[object], command: list[str]) -> None:
    """`--since 2026-12-02 --until 2026-12-01` matches nothing by construction: exit 2, the DLQ never read (before:
    accepted, and "0 dead letters match")."""
    result = run(*command, "--since", "2026-12-02", "--until", "2026-12-01")
    assert result.exit_code == 2, result.output
    assert "--until" in result.output and "before --since" in result.output
    assert reads == []


@pytest.mark.parametrize("since, until", [("2026-12-01", "2026-12-01"), ("2026-12-01T08:00", "2026-12-01T01:00Z")])
def test_until_at_or_after_since_is_taken(reads: list[object], since: str, until: str) -> None:
    """The same instant, or a later one written in another offset (08:00 Vietnam time is 01:00 UTC), is taken."""
    result = run("list", "--since", since, "--until", until)
    assert result.exit_code == 0, result.output
    assert len(reads) == 1


def test_since_takes_what_trace_takes_hours_days_minutes_ago(reads: list[object]) -> None:
    """`--since 12h` (as `trace --since` and the runbooks write it) is twelve hours ago (ops audit: it was refused,
    "Input should be a valid datetime"); the filter the read gets is that instant, within the run's own seconds."""
    before = datetime.now(UTC)
    result = run("list", "--since", "12h", "--until", "90m")
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    call = reads[0]
    assert isinstance(call, tuple)
    filters = call[2]  # dead_letters(conn, namespace, filters)
    assert isinstance(filters, Filters)
    assert filters.since is not None and filters.until is not None
    assert before - timedelta(hours=12) <= filters.since <= after - timedelta(hours=12)
    assert before - timedelta(minutes=90) <= filters.until <= after - timedelta(minutes=90)


@pytest.mark.parametrize("since", ["yesterday", "12x", "0001-01-01T00:00+14:00", "9" * 50])
def test_a_since_of_no_known_form_is_a_usage_error_naming_the_forms(reads: list[object], since: str) -> None:
    result = run("list", "--since", since)
    assert result.exit_code == 2, result.output
    assert "--since" in result.output and "12h" in result.output
    assert reads == []


@pytest.mark.parametrize("since", ["30000d", "1960-01-01", "1970-01-01T07:30"])
def test_a_since_before_1970_reads_from_the_start_not_a_negative_time(monkeypatch: pytest.MonkeyPatch,
                                                                      since: str) -> None:
    """Kafka's time index takes -1 and -2 for "latest" and "earliest": a time at or before 1970 plus the margin reads
    from 0 (review: it asked for -3600000 and aiokafka refused it with a traceback)."""
    asked: list[int | None] = []

    async def replayed_keys(*_args: Any) -> set[bytes]:
        return set()

    async def read_into(_conn: Any, _topic: str, _apply: Any, since_ms: int | None) -> None:
        asked.append(since_ms)

    monkeypatch.setattr(dlq, "replayed_keys", replayed_keys)
    monkeypatch.setattr(dlq, "read_into", read_into)
    monkeypatch.delenv("PRIVACY_KEK", raising=False)
    monkeypatch.delenv("PRIVACY_KEK_FILE", raising=False)
    result = run("list", "--since", since)
    assert result.exit_code == 0, result.output
    assert asked == [0]


@pytest.mark.parametrize("until, last", [("2026-12-01", "2026-12-01T23:59:59.999999+07:00"),
                                         ("2026-12-01T08:00", "2026-12-01T08:00+07:00")])
def test_an_until_date_alone_takes_that_whole_day(reads: list[object], until: str, last: str) -> None:
    """`--until 2026-12-01` ("at or before") is the end of that day in Vietnam; a time is itself (time audit: a date
    stopped at its 00:00, so the day named was left out and `--since D --until D` listed nothing)."""
    result = run("list", "--since", "2026-12-01", "--until", until)
    assert result.exit_code == 0, result.output
    call = reads[0]
    assert isinstance(call, tuple) and isinstance(call[2], Filters)
    assert call[2].until == datetime.fromisoformat(last)
    assert call[2].since == datetime.fromisoformat("2026-12-01T00:00+07:00")


def test_an_until_date_before_1970_ends_at_1970s_start() -> None:
    """The end of 1969-12-31 in Vietnam is before 1970 (Kafka's time index starts there): held to 1970-01-01T00:00Z,
    not taken a day on from the 1970 it was first held to."""
    from services.cli.options import moment

    assert moment("1969-12-31", day_end=True) == datetime(1970, 1, 1, tzinfo=UTC)
