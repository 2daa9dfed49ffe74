"""Splitting a body into records: the record limit comes before any work per record, so a body of many tiny
records is refused in memory bounded by the body (its parse) or by the limit, never amplified per element."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.gateway.batch import JSON_SEQ, BodyError, split_body

pytestmark = pytest.mark.unit
LIMIT = 1000


def peak_of(split: Callable[[], object]) -> int:
    """Peak bytes traced while `split` runs (it is expected to raise BodyError)."""
    tracemalloc.start()
    try:
        with pytest.raises(BodyError, match=f"the limit is {LIMIT} per request"):
            split()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_array_past_the_limit_is_refused_before_any_element_is_serialised(monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 zeros against a limit of 1,000: refused with the count, and not one element re-serialised."""
    serialised: list[object] = []
    monkeypatch.setattr(orjson, "dumps", lambda obj, *_a, **_k: serialised.append(obj) or b"0")
    body = b"[" + b"0," * 99_999 + b"0]"
    with pytest.raises(BodyError, match="body holds 100000 records; the limit is 1000 per request"):
        split_body(body, "application/json", LIMIT)
    assert serialised == []


def test_an_array_of_tiny_records_costs_memory_in_proportion_to_its_body() -> None:
    """20,000 zeros (40 KB): the peak is that of parsing the body (before: ~4 KiB per element, 2,000 times it)."""
    body = b"[" + b"0," * 19_999 + b"0]"
    peak = peak_of(lambda: split_body(body, "application/json", LIMIT))
    assert peak < 32 * len(body), f"{peak} bytes at the peak for a {len(body)}-byte body"


@pytest.mark.parametrize("content_type, separator", [("application/x-ndjson", b"\n"), (JSON_SEQ, b"\x1e")])
def test_lines_and_sequences_are_split_no_further_than_the_limit(content_type: str, separator: bytes) -> None:
    """100,000 `{}` records: refused having split at most the limit + 1 of them (the peak is below the body's
    size; before, every record was split first: 17 times the body)."""
    body = separator.join([b"{}"] * 100_000)
    peak = peak_of(lambda: split_body(body, content_type, LIMIT))
    assert peak < len(body), f"{peak} bytes at the peak for a {len(body)}-byte body"


def test_ndjson_sent_as_json_is_split_no_further_than_the_limit() -> None:
    """The same as JSON: past the failed parse, splitting adds less than the body (before: every line split
    twice, 1.6 times the parse's own peak)."""
    body = b"\n".join([b"{}"] * 100_000)
    tracemalloc.start()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    parse = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = peak_of(lambda: split_body(body, "application/json", LIMIT))
    assert peak < parse + len(body), f"{peak} bytes at the peak, {parse} of them parsing a {len(body)}-byte body"


def _as_before(body: bytes, separator: bytes) -> list[bytes]:
    """The records as the unbounded split made them (every piece, stripped, blank ones skipped)."""
    pieces = body.splitlines() if separator == b"\n" else body.split(separator)
    return [p.strip() for p in pieces if p.strip()]


@given(st.lists(st.sampled_from([b"{}", b'{"a": 1}', b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x0b", b"\x0c",
                                 b"\x1e", b"x"]), max_size=30))
def test_the_lazy_split_finds_the_records_the_full_split_found(parts: list[bytes]) -> None:
    """Any mix of records, blanks, line breaks and separators: the same records as splitting it all."""
    body = b"".join(parts)
    for content_type, separator in (("application/x-ndjson", b"\n"), (JSON_SEQ, b"\x1e")):
        expected = _as_before(body, separator)
        if expected:
            assert split_body(body, content_type, LIMIT) == expected
        else:
            with pytest.raises(BodyError, match="no records"):
                split_body(body, content_type, LIMIT)
