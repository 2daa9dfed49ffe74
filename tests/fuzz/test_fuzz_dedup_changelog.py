"""Fuzzing intake's de-duplication restore: whatever its changelog holds, no record stops intake's start.

Intake reads `commune.intake.dedup` at every assignment (`services.intake.restore`); a record that raised out of it
(a tombstone, `{}`, an unknown family, `"keys": 5`) ended the run, and the next start read it again. Records here
are real changelog records, the same with members replaced by hostile values, under their own key or another, any
bytes and tombstones; what the restore keeps is exactly what the records it can read list.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Family
from services.intake.dedup import UnreadableChangelog, published_key, read_changelog_record
from tests.fuzz.strategies import EXAMPLES, fuzz_settings, mutated
from tests.intake.test_restore import changelog, restored, skipped

pytestmark = pytest.mark.unit
WANTED = {(Family.DOSSIER, 3), (Family.ANNOUNCEMENT, 3)}
BASES: list[tuple[Any, dict[str, Any]]] = [
    ("keys", {"at": 1_796_000_000_000, "keys": [published_key("/communes/02269/mc", f"e{i}") for i in range(3)],
              "ids": ["e0", "e1", "e2"]}),
    ("ids", {"at": 1_796_000_000_000, "ids": ["e0", "e1"]}),
]
"""Readable values of both forms (`dedup.changelog_record`'s, and the earlier bare ids)."""
KEYS = st.one_of(
    st.sampled_from([b"dossier:3:120", b"announcement:3:0", b"mobile-team:3:9", b"dossiers:0:1", b"dossier",
                     b":", b"", "dossier\udcff:1".encode("utf-8", "surrogatepass")]),
    st.binary(max_size=30), st.none())
ODD = st.sampled_from([b"{}", b"not json", b'{"at": 0, "keys": 5}', b"[]", b"null", b'{"at": true, "keys": []}',
                       b'{"at": 1e3, "ids": []}', b'{"at": 123456789012345678901234567890, "keys": []}',
                       b'{"at": 0, "keys": [["x"]]}', b'{"at": 0, "ids": [{"a": 1}]}', b"\xff\xfe"])


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes | None, bytes | None]:
    """(record key, value): a readable record, one mutated, an odd one, any bytes, or a tombstone."""
    kind = draw(st.sampled_from(["readable", "mutated", "mutated", "odd", "bytes", "tombstone"]))
    _, base = draw(st.sampled_from(BASES))
    if kind == "mutated":
        _, base = draw(mutated(BASES))
    key = b"dossier:3:120" if draw(st.integers(0, 2)) else draw(KEYS)
    if kind == "tombstone":
        return key, None
    if kind == "odd":
        return key, draw(ODD)
    if kind == "bytes":
        return key, draw(st.binary(max_size=200))
    return key, orjson.dumps(base)


def _readable(key: bytes | None, value: bytes | None) -> tuple[Family, int, list[str], list[str]] | None:
    try:
        return read_changelog_record(key, value)
    except UnreadableChangelog:
        return None


@fuzz_settings(200)
@given(stream=st.lists(records(), max_size=12))
def test_no_changelog_record_raises_out_of_the_restore(stream: list[tuple[bytes | None, bytes | None]]) -> None:
    """Any changelog records: the restore applies or skips each (skipped ones counted), never raises, and keeps
    exactly the ids of the records it can read whose family it owns (audit: one record ended every start)."""
    EXAMPLES["intake: de-duplication changelog restore"] += 1
    before = skipped()
    seen = asyncio.run(restored(changelog(stream), WANTED))
    read = [r for r in (_readable(k, v) for k, v in stream) if r is not None]
    assert skipped() - before == len(stream) - len(read)
    for family in (Family.DOSSIER, Family.ANNOUNCEMENT):
        ids = seen.of(family, 3)
        for _, _, keys, legacy in (r for r in read if r[0] is family):
            assert all(k in ids for k in keys) and all(ids.published("/any", i) for i in legacy)
    assert len(seen) <= sum(len(k) + len(legacy) for f, _, k, legacy in read if (f, 3) in WANTED)


def test_the_fuzzed_records_reach_every_branch() -> None:
    """The strategy's records before mutation are read and restored, so the fuzz test does not exercise the
    refusals alone."""
    seen = asyncio.run(restored(changelog([(b"dossier:3:120", orjson.dumps(base)) for _, base in BASES]), WANTED))
    assert len(seen) == 5 and seen.of(Family.DOSSIER, 3).published("/communes/02269/mc", "e2")
