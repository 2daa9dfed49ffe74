"""Fuzzing what notify reads back from its ledger topic: any bytes, entries with hostile members, deferrals at any time.

Only notify writes commune.notify.ledger, but a record it cannot read (a broken write, a tool, an operator's kcat)
must not stop the tail: read back every restart, it would stop notify for good. What the ledger accepts as a
deferral must also come out again where the release reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.notification import NotificationRequest
from services.notify import rules
from services.notify.ledger import Entry, Ledger
from services.notify.policy import QuietHours
from services.notify.subscribers import Registry
from tests.fuzz.strategies import EXAMPLES, dumps, fuzz_settings, mutated
from tests.notify.events import directory, dossier, storm
from tests.notify.fakes import FakeProducer

pytestmark = pytest.mark.unit
HOOKS = Registry.model_validate(
    {"subscribers": [{"name": "prov-08", "url": "https://example.gov.vn/h", "secret": "s"}]})
LATER = datetime(2025, 11, 4, 5, 0, tzinfo=UTC)


def _deferrals() -> list[tuple[str, dict[str, Any]]]:
    """Deferred entries of an SMS, a webhook and an emergency, as notify writes them."""
    requests = [*rules.for_event(dossier("fz-1", status=5), directory(), HOOKS),
                *rules.for_event(storm("fz-2"), directory(), Registry())[:1]]
    return [(r.channel.value, Entry(state="deferred", request=r.model_copy(update={"not_before": LATER}))
             .model_dump(mode="json", exclude_none=True)) for r in requests]


BASES = [*_deferrals(), ("done", {"state": "done", "outcome": "sent"})]
IDS = {tag: entry["request"]["notification_id"].encode() for tag, entry in BASES if "request" in entry}
KEYS = st.one_of(st.binary(max_size=40), st.none(), st.sampled_from(sorted(IDS.values())))
RECORDS = st.one_of(
    st.tuples(KEYS, st.binary(max_size=400) | st.none()),
    st.tuples(KEYS, mutated(BASES).map(lambda tagged: dumps(tagged[1]))),
    # under its own id, as notify writes it: what survives the mutation is kept, and must come out again
    mutated(BASES).map(lambda tagged: (IDS.get(tagged[0], b"n-1"), dumps(tagged[1]))),
)


@fuzz_settings(1500)
@given(st.lists(st.tuples(RECORDS, st.integers(0, 2**45)), min_size=1, max_size=4))
def test_any_ledger_record_is_applied_or_skipped_and_what_is_deferred_can_be_released(
        records: list[tuple[tuple[bytes | None, bytes | None], int]]) -> None:
    """No record raises out of `apply_record`; each deferral it keeps reads back as a request, from the due index
    (the release) and by id, so a record accepted here cannot stop the release task later."""
    EXAMPLES["notify: ledger apply_record, release"] += 1
    ledger = Ledger("t.ledger", FakeProducer(), clock=lambda: LATER)
    for (key, value), timestamp_ms in records:
        ledger.apply_record(0, key, value, timestamp_ms)
    far = LATER + timedelta(days=365 * 200)
    released = list(ledger.due(far, owned=lambda p: True))
    assert all(isinstance(r, NotificationRequest) for r in released)
    assert sorted(r.notification_id for r in ledger.deferred.values()) == sorted(ledger.deferred)


OFFSETS = st.none() | st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.none() | st.builds(lambda at, tz: at.replace(tzinfo=tz), st.datetimes(), OFFSETS)
"""Any time `datetime` holds, year 1 to 9999, naive or at any offset: what another writer could put in a deferral."""


@fuzz_settings(300)
@given(st.sampled_from([entry for tag, entry in BASES if "request" in entry]), TIMES, TIMES,
       st.integers(0, 2**45))
def test_a_deferral_at_any_time_is_skipped_or_released_as_a_sender_can_use_it(
        base: dict[str, Any], not_before: datetime | None, expires_at: datetime | None, timestamp_ms: int) -> None:
    """Whatever its `not_before` and `expires_at`, a deferral read back raises nothing out of `apply_record` (a year
    0 due time did, ending the tail), and one that is released has times a sender compares with its clock and
    moves past the quiet hours without a TypeError or an OverflowError (a naive `expires_at` raised in a sender)."""
    EXAMPLES["notify: ledger deferral times, release"] += 1
    request = {**base["request"], "not_before": not_before and not_before.isoformat(),
               "expires_at": expires_at and expires_at.isoformat()}
    ledger = Ledger("t.ledger", FakeProducer(), clock=lambda: LATER)
    ledger.apply_record(0, request["notification_id"].encode(), dumps({"state": "deferred", "request": request}),
                        timestamp_ms)
    for released in ledger.due(LATER + timedelta(days=365 * 200), owned=lambda p: True):
        for at in (released.not_before, released.expires_at):
            if at is not None:
                assert at.utcoffset() is not None and (at < LATER or at >= LATER)
                QuietHours().release_at(at)
