"""Intake's dead letters sealed whole (ADR 0026), pure: the layout round-trips any record, nothing a producer wrote
freely stays in clear, the dead letter's key names at most a commune, and dead letters of the older layout still
open."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.deadletter import DeadLetterContext, OriginalRecord, Reason
from schemas.personal import SEALED_KEY_HEADER, SEALED_LAYOUT_HEADER, SEALED_SUBJECT_HEADER
from services.gateway import batch
from services.privacy import crypto, deadletters
from services.privacy.crypto import Tampered
from services.privacy.keyring import Keyring
from tests.privacy.keys import keyring
from tests.samples import dumps, portal_dossier

pytestmark = pytest.mark.unit

CCCD = b"008123456789"
TRACEPARENT = b"00-" + b"ab" * 16 + b"-" + b"cd" * 8 + b"-01"
NAMES = st.text(max_size=16) | st.sampled_from([*deadletters.CLEAR_HEADERS, "ce_subject", "ce_id", "ce_source",
                                                "x-applicant-phone", "dlq.reason", "dlq.sealed.key"])
VALUES = st.none() | st.binary(max_size=40) | st.sampled_from([b"02269", b"20", b"1.0", TRACEPARENT, CCCD])
RECORDS = st.builds(OriginalRecord, st.none() | st.binary(max_size=64), st.none() | st.binary(max_size=200),
                    st.lists(st.tuples(NAMES, VALUES), max_size=8))
CONTEXT = DeadLetterContext(reason=Reason.MISSING_COMMUNE_HEADER, field="commune-code", message="m",
                            source_topic="commune.raw.dossier", source_partition=2, source_offset=7,
                            rejected_at="2026-12-01T08:00:00+00:00").headers()
ORIGIN = {"source_topic": "commune.raw.dossier", "partition": 2, "offset": 7}


def seal(record: OriginalRecord, ring: Keyring | None = None) -> deadletters.SealedDeadLetter:
    ring = keyring() if ring is None else ring  # not `ring or ...`: an empty keyring is falsy (it has a length)
    return deadletters.seal_dead_letter(ring, record.key, record.value, record.headers, **ORIGIN,
                                        rejected_on=date(2026, 12, 1), retention_days=30)


@given(record=RECORDS)
def test_the_record_layout_round_trips_any_record(record: OriginalRecord) -> None:
    """Null or any bytes as key, value and header values, any header names (lone surrogates too), in order."""
    assert OriginalRecord.unpack(record.pack()) == record


@given(record=RECORDS, cut=st.integers(min_value=1, max_value=1000))
def test_bytes_that_are_no_whole_record_are_refused(record: OriginalRecord, cut: int) -> None:
    """A truncated or extended plaintext raises ValueError (the CLI counts it unreadable), never a wrong record."""
    packed = record.pack()
    with pytest.raises(ValueError):
        OriginalRecord.unpack(packed[:max(0, len(packed) - cut)])
    with pytest.raises(ValueError):
        OriginalRecord.unpack(packed + b"\x00")


@given(record=RECORDS, at=st.integers(min_value=0, max_value=8))
@settings(deadline=None)
def test_a_cccd_in_the_key_or_any_header_is_nowhere_in_clear(record: OriginalRecord, at: int) -> None:
    """Planted in the key and among the headers, the CCCD appears in no byte of the dead letter (key, header names and
    values, value); what stays in clear is a commune key and closed-shape copies of original headers only; the
    letter opens to the original record with intake's `dlq.*` headers after it."""
    headers = [*record.headers[:at], ("x-applicant-id", CCCD), *record.headers[at:]]
    ring = keyring()
    letter = seal(OriginalRecord(CCCD, record.value, headers), ring)
    stored = [*letter.headers, *CONTEXT]
    clear = (letter.key or b"") + letter.value + b"".join(name.encode("utf-8", "surrogatepass") + (value or b"")
                                                          for name, value in stored)
    assert CCCD not in clear
    assert letter.key is None or (len(letter.key) == 5 and letter.key.isdigit())
    for name, value in letter.headers:
        assert name.startswith("dlq.sealed.") or deadletters.CLEAR_HEADERS[name](value)
    opened = deadletters.open_dead_letter(ring, letter.key, letter.value, stored, **ORIGIN)
    assert opened == OriginalRecord(CCCD, record.value, [*headers, *CONTEXT])


def test_only_closed_shapes_stay_in_clear_for_operators() -> None:
    """A known type, a time, commune and province codes and the content type are copied in clear; the trace id,
    id, source and subject (free text a producer may fill with a citizen's number), a phone header and a type or
    time that is not one stay sealed only."""
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"evt-1"), ("ce_source", b"/communes/02269/one-stop"),
               ("ce_type", b"vn.communebus.dossier.status-changed.v1"), ("ce_time", b"2025-11-03T08:10:26Z"),
               ("ce_subject", CCCD), ("ce_commune", b"02269"), ("ce_province", b"08"), ("ce_traceparent", TRACEPARENT),
               ("content-type", b"application/json"), ("x-applicant-phone", b"0912345678"),
               ("ce_type", b"0912345678"), ("ce_time", b"0912345678"), ("commune-code", b"0912345678")]
    letter = seal(OriginalRecord(b"02269", b"{}", headers))
    assert [name for name, _ in letter.headers] == [
        "ce_specversion", "ce_type", "ce_time", "ce_commune", "ce_province", "content-type",
        SEALED_SUBJECT_HEADER, SEALED_KEY_HEADER, SEALED_LAYOUT_HEADER]
    assert b"0912345678" not in b"".join(value for _, value in letter.headers)
    # a trace id the producer chose may carry a citizen's number (review): sealed only
    numbered = b"00-000000000000000000" + CCCD + b"-" + b"cd" * 8 + b"-01"
    sealed = seal(OriginalRecord(None, b"{}", [("ce_traceparent", numbered)]))
    assert numbered not in b"".join(v for _, v in sealed.headers)


@pytest.mark.parametrize("content_type", [b"application/012345678901", b"text/0912345678", b"Nguyen/van-an.0912345678",
                                          b"application/json; charset=0912345678", b"application/json;v=012345678901"])
def test_a_content_type_that_is_no_media_type_the_project_reads_stays_sealed_only(content_type: bytes) -> None:
    """A content-type of media-type shape can carry a CCCD, phone or name (before: kept in clear); only a media type
    the project reads, with at most a UTF-8 charset, is copied in clear."""
    letter = seal(OriginalRecord(None, b"not json", [("content-type", content_type)]))
    assert [name for name, _ in letter.headers] == [SEALED_SUBJECT_HEADER, SEALED_KEY_HEADER, SEALED_LAYOUT_HEADER]


@pytest.mark.parametrize("content_type", [b"application/json", b"application/cloudevents+json; charset=UTF-8",
                                          b"Application/JSON;charset=utf-8", *(t.encode() for t in batch.READABLE)])
def test_a_media_type_the_project_reads_stays_in_clear(content_type: bytes) -> None:
    """The JSON media types the gateway and intake read (the simulator's structured one among them) stay readable."""
    letter = seal(OriginalRecord(None, b"{}", [("content-type", content_type)]))
    assert ("content-type", content_type) in letter.headers


@pytest.mark.parametrize(("key", "headers", "expected"), [
    (b"02269", [], b"02269"),
    (CCCD, [("ce_commune", b"02269")], b"02269"),
    (None, [("commune-code", b"02269")], b"02269"),
    (CCCD, [("commune-code", b"2269"), ("ce_commune", CCCD)], None),
    (b"0912345678", [], None),
    (None, [], None),
])
def test_the_dead_letters_key_is_the_commune_the_record_names_or_none(
        key: bytes | None, headers: list[tuple[str, bytes | None]], expected: bytes | None) -> None:
    """Five digits from the key, `ce_commune` or `commune-code` (the commune's partition, ADR 0004); else no key."""
    assert seal(OriginalRecord(key, b"{}", headers)).key == expected


def test_a_dead_letter_of_the_older_layout_still_opens() -> None:
    """Written before record.v1 (the value alone sealed, key and headers in clear, no layout header), it opens to its
    key, value and headers as they were, without the `dlq.sealed.*` ones, as replay read it before."""
    ring = keyring()
    raw = dumps(portal_dossier("TL-OLD"))
    key_id, dek, _ = ring.key_for(deadletters.identify(ring, raw) or "")
    old = [("x-mine", b"1"), *CONTEXT, (SEALED_SUBJECT_HEADER, (deadletters.identify(ring, raw) or "").encode()),
           (SEALED_KEY_HEADER, key_id.encode())]
    value = crypto.seal_raw(dek, raw, deadletters.origin_aad("commune.raw.dossier", 2, 7))
    assert deadletters.open_dead_letter(ring, b"02269", value, old, **ORIGIN) == OriginalRecord(
        b"02269", raw, [("x-mine", b"1"), *CONTEXT])


def test_an_unknown_layout_or_a_letter_moved_elsewhere_does_not_open() -> None:
    """A layout this reader does not know is a ValueError (counted unreadable); the same letter claiming another
    origin fails authentication (the associated data is still its origin)."""
    letter = seal(OriginalRecord(CCCD, b"{}", [("x", b"y")]))
    ring = keyring()
    ring.apply(letter.keys[0].record_key, letter.keys[0].model_dump_json().encode())
    newer = [(k, b"record.v9" if k == SEALED_LAYOUT_HEADER else v) for k, v in letter.headers]
    with pytest.raises(ValueError):
        deadletters.open_dead_letter(ring, None, letter.value, newer, **ORIGIN)
    with pytest.raises(Tampered):
        deadletters.open_dead_letter(ring, None, letter.value, letter.headers, **{**ORIGIN, "offset": 8})
    without_layout = [(k, v) for k, v in letter.headers if k != SEALED_LAYOUT_HEADER]
    with pytest.raises(Tampered):  # what an older reader does: the value opened as the older layout's
        deadletters.open_dead_letter(ring, None, letter.value, without_layout, **ORIGIN)
