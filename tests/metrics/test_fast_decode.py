"""The fast path of metrics' decode (`services.metrics.fast`, msgspec) against the slim views as its oracle.

The path must never be looser than the view: a record it accepts, the view accepts with the same envelope,
the same facts and the same merge; anything else it leaves to the view (returns None), and it never raises.
And it must be taken: every dossier event as intake writes it goes through it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bench.bench_metrics import dossier_events
from schemas import wire
from services.metrics import decoding, fast
from services.metrics.handlers import Decoded
from services.metrics.partition import PartitionState
from tests.fuzz.strategies import HOSTILE, HOSTILE_DATES, HOSTILE_STRINGS, mutated
from tests.metrics.events import dossier
from tests.metrics.test_views_oracle import PLAUSIBLE

pytestmark = pytest.mark.unit
ENVELOPE = ("id", "source", "time", "subject", "commune", "province", "traceparent", "type", "specversion",
            "datacontenttype")
FACTS = ("dossier_code", "channel", "status", "received_at", "due_at", "ended_at", "paid_online", "digitised",
         "timeliness")
INTAKE_SHAPED = [wire.encode(e) for e in dossier_events(120, canonical=True)]
"""Dossier events as intake writes them (procedure, documents, a sealed applicant): every status."""
TEST_EVENTS = [wire.encode(dossier("02269", f"D-{s}", s, f"e{s}", 30, fees=s % 2 == 0, paid_online=s > 4,
                                   digitised=s % 3 == 0, end_hours=None if s < 9 else 20 * s))
               for s in range(1, 11)]
BASES = [(r.headers, orjson.loads(r.value)) for r in INTAKE_SHAPED[:40] + TEST_EVENTS]


PATH = {True: "fast path", False: "left to the view"}
"""How a drawn record went (hypothesis statistics: both must be common for the test to mean something)."""


def slim_or_none(headers: wire.Headers, value: bytes | None) -> Decoded | None:
    try:
        return decoding.slim(headers, value)
    except wire.InvalidRecord:
        return None


def seen(event: Decoded) -> tuple[Any, ...]:
    """What metrics reads of an event, and what it does to an empty partition."""
    part = PartitionState(0, {})
    change = part.apply(event)
    fees = [(f.amount_vnd, f.name) for f in event.data.fees]  # type: ignore[union-attr]
    return (tuple(getattr(event, n) for n in ENVELOPE), tuple(getattr(event.data, n) for n in FACTS), fees,
            change, {c: (t.counts, t.due) for c, t in part.communes.items()})


def check(headers: wire.Headers, value: bytes | None) -> bool:
    """The oracle's rule for one record; True when the fast path took it."""
    quick = fast.dossier(headers, value)
    if quick is None:
        return False
    view = slim_or_none(headers, value)
    assert view is not None, "the fast path accepted a record the view refuses"
    assert seen(quick) == seen(view)
    return True


def test_every_dossier_event_as_intake_writes_it_takes_the_fast_path_and_reads_as_the_view() -> None:
    taken = [check(r.headers, r.value) for r in INTAKE_SHAPED + TEST_EVENTS]
    assert all(taken), f"{taken.count(False)} of {len(taken)} records missed the fast path"
    assert {fast.dossier(r.headers, r.value).data.status for r in TEST_EVENTS} == set(range(1, 11))  # type: ignore[union-attr]


def test_an_all_zero_traceparent_reads_as_the_view_reads_it() -> None:
    """A canonical record written before intake replaced all-zero traceparents: the fast path derives the trace as
    the view (`Event`) now does, rather than keep the zeros the view replaces."""
    record = TEST_EVENTS[0]
    zero = "00-" + "0" * 32 + "-" + "0" * 16 + "-01"
    headers = [(k, zero.encode() if k == "ce_traceparent" else v) for k, v in record.headers]
    assert check(headers, record.value)
    assert fast.dossier(headers, record.value).traceparent != zero  # type: ignore[union-attr]


def test_the_worker_decode_takes_the_fast_path_for_dossiers_and_the_view_for_the_rest() -> None:
    record = TEST_EVENTS[0]
    assert isinstance(decoding.fast(record.headers, record.value), fast.FastDossier)
    padded = [(k, b" " + v if k == "ce_id" else v) for k, v in record.headers]
    assert fast.dossier(padded, record.value) is None
    assert decoding.fast(padded, record.value).id == "e1"  # the view strips it, as before
    with pytest.raises(wire.InvalidRecord):
        decoding.fast(record.headers, b'{"dossier_code": 1}')


def _header(headers: wire.Headers, name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in headers]


def _data(record: wire.KafkaRecord, **changes: Any) -> tuple[wire.Headers, bytes]:
    return record.headers, orjson.dumps({**orjson.loads(record.value), **changes})


HOSTILE_CASES: dict[str, tuple[wire.Headers, bytes]] = {
    "an end before receipt": _data(TEST_EVENTS[8], ended_at="2025-11-02T00:00:00Z"),
    "more fees than a list may hold": _data(TEST_EVENTS[1], fees=[{"amount_vnd": 1}] * 1001),
    "a negative fee": _data(TEST_EVENTS[1], fees=[{"amount_vnd": -1}]),
    "a fee past the limit": _data(TEST_EVENTS[1], fees=[{"amount_vnd": 10**15 + 1}]),
    "a fee name past its length": _data(TEST_EVENTS[1], fees=[{"amount_vnd": 1, "name": "x" * 301}]),
    "invalid UTF-8 in a field metrics skips": (
        TEST_EVENTS[1].headers, TEST_EVENTS[1].value[:-1] + b',"note":"\xff"}'),
    "nesting past the view's limit in a skipped field": (
        TEST_EVENTS[1].headers, TEST_EVENTS[1].value[:-1] + b',"x":' + b"[" * 200 + b"]" * 200 + b"}"),
    "a number too long for the view in a skipped field": (
        TEST_EVENTS[1].headers, TEST_EVENTS[1].value[:-1] + b',"x":' + b"1" * (fast.NUMBER_DIGITS + 1) + b"}"),
    "a repeated header whose first copy is not UTF-8": (
        [("ce_id", b"\xff"), *TEST_EVENTS[1].headers], TEST_EVENTS[1].value),
    "a time with an offset": (
        _header(TEST_EVENTS[1].headers, "ce_time", b"2025-11-03T08:00:00+07:00"), TEST_EVENTS[1].value),
    "a time past the range": (
        _header(TEST_EVENTS[1].headers, "ce_time", b"2101-01-01T00:00:00Z"), TEST_EVENTS[1].value),
    "a traceparent with a line break": (
        _header(TEST_EVENTS[1].headers, "ce_traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01\n"),
        TEST_EVENTS[1].value),
    "a province not the commune's": (_header(TEST_EVENTS[1].headers, "ce_province", b"01"), TEST_EVENTS[1].value),
    "a status as text": (TEST_EVENTS[1].headers, TEST_EVENTS[1].value.replace(b'"status":2', b'"status":"2"')),
    "a fee amount as a float": (TEST_EVENTS[1].headers, TEST_EVENTS[1].value.replace(b"8000", b"8000.0")),
    "a fee with an unknown member": (TEST_EVENTS[1].headers, TEST_EVENTS[1].value.replace(b"8000", b'8000,"x":1')),
    "a dossier code with a bidirectional override": (
        TEST_EVENTS[1].headers, TEST_EVENTS[1].value.replace(b'"D-2"', b'"D-\\u202e2"')),
    "a due date before receipt": (TEST_EVENTS[1].headers, TEST_EVENTS[1].value.replace(b'"due_at":"2025-11-06',
                                                                                       b'"due_at":"2025-11-01')),
    "a tombstone": (TEST_EVENTS[1].headers, None),  # type: ignore[dict-item]
    # found by the review helper: pydantic strips a fee's name, and a null traceparent header is not an absent one
    "a fee name with spaces around it": _data(TEST_EVENTS[1], fees=[{"amount_vnd": 1, "name": " x "}]),
    "a fee name ending in an ideographic space": _data(TEST_EVENTS[1], fees=[{"amount_vnd": 1, "name": "x\u3000"}]),
    "a fee name of spaces": _data(TEST_EVENTS[1], fees=[{"amount_vnd": 1, "name": "   "}]),
    # the view normalises text to NFC before its length (schemas.text): 200 x U+FB2A is 400 characters in NFC
    "a fee name typed decomposed (NFD)": _data(TEST_EVENTS[1],
                                               fees=[{"amount_vnd": 1, "name": "Le\u0302\u0323 phi\u0301"}]),
    "a fee name longer in NFC than typed": _data(TEST_EVENTS[1], fees=[{"amount_vnd": 1, "name": "\ufb2a" * 200}]),
    "a traceparent header without a value": (
        _header(TEST_EVENTS[1].headers, "ce_traceparent", None), TEST_EVENTS[1].value),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_what_the_fast_path_cannot_decide_goes_to_the_view(case: str) -> None:
    headers, value = HOSTILE_CASES[case]
    assert fast.dossier(headers, value) is None
    check(headers, value)


@pytest.mark.parametrize("attribute", wire.ATTRIBUTES)
def test_an_envelope_attribute_that_is_not_utf8_goes_to_the_view(attribute: str) -> None:
    """Each attribute the view reads is checked (a new one in `wire.ATTRIBUTES` too), or left to the view."""
    headers = [*(h for h in TEST_EVENTS[1].headers if h[0] != f"ce_{attribute}"), (f"ce_{attribute}", b"\xff")]
    assert fast.dossier(headers, TEST_EVENTS[1].value) is None
    assert slim_or_none(headers, TEST_EVENTS[1].value) is None


def test_the_depth_guard_lets_through_no_nesting_the_view_refuses() -> None:
    """The guard counts brackets; a value with at most DEPTH_LIMIT nests at most that deep, which the view takes."""
    def nested(depth: int) -> bytes:  # the root object is one level
        inner = depth - 1
        return TEST_EVENTS[1].value[:-1] + b',"x":' + b"[" * inner + b"1" + b"]" * inner + b"}"
    headers = TEST_EVENTS[1].headers
    limit = nested(fast.DEPTH_LIMIT - TEST_EVENTS[1].value.count(b"[") - TEST_EVENTS[1].value.count(b"{") + 1)
    assert limit.count(b"[") + limit.count(b"{") == fast.DEPTH_LIMIT
    assert check(headers, limit)
    assert slim_or_none(headers, nested(fast.DEPTH_LIMIT)) is not None
    assert slim_or_none(headers, nested(fast.DEPTH_LIMIT + 1)) is None  # why the guard is needed


def test_the_number_guard_matches_the_views_limit() -> None:
    def with_number(digits: int) -> bytes:
        return TEST_EVENTS[1].value[:-1] + b',"x":-' + b"9" * digits + b".5e3}"
    assert check(TEST_EVENTS[1].headers, with_number(fast.NUMBER_DIGITS))
    assert slim_or_none(TEST_EVENTS[1].headers, with_number(fast.NUMBER_DIGITS + 1)) is None


@st.composite
def envelope_changed(draw: st.DrawFn) -> tuple[list[tuple[str, bytes]], bytes]:
    """A base record, data members replaced/deleted/added (hostile values) and perhaps one header replaced."""
    index, data = draw(mutated([(i, d) for i, (_, d) in enumerate(BASES)]))
    headers = list(BASES[index][0])
    if draw(st.booleans()):
        i = draw(st.integers(0, len(headers) - 1))
        replacement = draw(st.one_of(HOSTILE_STRINGS, HOSTILE_DATES, st.sampled_from(["02269", "08", "1.0", ""])))
        headers[i] = (headers[i][0], replacement.encode("utf-8", "surrogatepass"))
    try:
        return headers, orjson.dumps(data)
    except TypeError:  # an integer past 64 bits orjson will not write
        return headers, orjson.dumps(BASES[index][1])


@settings(max_examples=800, deadline=None, derandomize=True)
@given(envelope_changed())
def test_hostile_members_never_make_the_fast_path_looser_than_the_view(record: tuple[Any, bytes]) -> None:
    event(PATH[check(*record)])


@settings(max_examples=800, deadline=None, derandomize=True)
@given(st.sampled_from(range(len(BASES))), st.lists(
    st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.floats(0, 1, exclude_max=True),
              st.binary(min_size=1, max_size=3) | st.sampled_from([b"\\", b'"', b"{", b"[", b"\\u", b"\xc3", b" "])),
    min_size=1, max_size=4))
def test_broken_bytes_never_make_the_fast_path_looser_than_the_view(index: int, edits: list[Any]) -> None:
    value = orjson.dumps(BASES[index][1])
    for action, where, data in edits:
        at = int(where * len(value))
        value = (value[:at] + data + value[at + 1:] if action == "replace" else
                 value[:at] + data + value[at:] if action == "insert" else value[:at] + value[at + 1:])
    event(PATH[check(BASES[index][0], value)])


@settings(max_examples=600, deadline=None, derandomize=True)
@given(st.sampled_from(range(len(BASES))), st.sampled_from(
    ["received_at", "due_at", "ended_at", "fees", "status", "channel", "timeliness", "paid_online"]),
    st.one_of(PLAUSIBLE, PLAUSIBLE, HOSTILE))
def test_a_hostile_value_in_a_field_metrics_reads(index: int, name: str, value: Any) -> None:
    headers, data = BASES[index]
    with contextlib.suppress(TypeError):  # an integer orjson will not write
        event(PATH[check(headers, orjson.dumps({**data, name: value}))])
