"""Fuzzing `schemas.wire.decode`: any headers and value give an event or `wire.InvalidRecord`, nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import wire
from schemas.deadletter import Reason
from schemas.events import Family
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from tests.fuzz.strategies import EXAMPLES, HOSTILE_STRINGS, SECRET, dumps, fuzz_settings, mutated
from tests.samples import canonical_dossier, storm_scheduled, visit_completed

pytestmark = pytest.mark.unit


def _record(event: dict[str, Any], family: Family) -> wire.KafkaRecord:
    outcome = normalise(family, dumps(event))
    assert isinstance(outcome, Accepted)
    return wire.encode(outcome.event)


RECORDS = [_record(canonical_dossier(), Family.DOSSIER), _record(visit_completed(), Family.MOBILE_TEAM),
           _record(storm_scheduled(), Family.ANNOUNCEMENT)]
DATA: list[tuple[int, dict[str, Any]]] = [(i, wire.decode(r.headers, r.value).data.model_dump(mode="json"))
                                          for i, r in enumerate(RECORDS)]
HEADER_VALUES = st.one_of(st.binary(max_size=30), HOSTILE_STRINGS.map(lambda s: s.encode("utf-8", "surrogatepass")),
                          st.sampled_from([b"\xff\xfe", b"\xc3", b"9999-12-31T23:59:59-14:00", b"0001-01-01T00:00:00",
                                           b"vn.communebus.dossier.status-changed.v1", b"1" * 5000]))


@st.composite
def hostile_headers(draw: st.DrawFn) -> tuple[int, list[tuple[str, bytes]]]:
    """(index of a valid record in RECORDS, its headers with some replaced, dropped or added)."""
    i = draw(st.integers(0, len(RECORDS) - 1))
    out = list(RECORDS[i].headers)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "add" or not out:
            out.append((draw(st.sampled_from(["ce_type", "ce_time", "ce_x", "ce_", "content-type"])),
                        draw(HEADER_VALUES)))
            continue
        if action == "drop":
            out.pop(draw(st.integers(0, len(out) - 1)))
        else:
            j = draw(st.integers(0, len(out) - 1))
            out[j] = (out[j][0], draw(HEADER_VALUES))
    return i, out


def decoded_or_invalid(headers: list[tuple[str, bytes]], value: bytes | None) -> None:
    try:
        wire.decode(headers, value)
    except wire.InvalidRecord as exc:
        assert isinstance(exc.reason, Reason) and exc.field and SECRET not in str(exc)


@fuzz_settings(1200)
@given(hostile_headers(), mutated(DATA), st.one_of(st.none(), st.binary(max_size=100)))
def test_decode_raises_only_invalid_record(headers: tuple[int, list[tuple[str, bytes]]],
                                           data: tuple[int, dict[str, Any]], noise: bytes | None) -> None:
    """Hostile ce_* headers (non-UTF-8, dropped, unknown types, far dates) with mutated data, null values and
    random bytes: `decode` returns an event or raises InvalidRecord with a reason and field, never anything else."""
    EXAMPLES["wire.decode: hostile headers and values"] += 1
    i, hs = headers
    decoded_or_invalid(hs, dumps(data[1]))
    decoded_or_invalid(hs, RECORDS[i].value)
    decoded_or_invalid(RECORDS[i].headers, noise)
