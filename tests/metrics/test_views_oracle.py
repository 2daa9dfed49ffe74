"""The slim decode metrics uses (`decoding.slim`, ADR 0023) against the full decode as its oracle (hypothesis).

For every record: what the slim decode refuses the full one refuses too, and for every event the full decode
accepts the slim one accepts it with the same envelope and the same merge results, alone and in any order.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import wire
from schemas.envelope import Event
from services.metrics import decoding
from services.metrics.partition import PartitionState
from tests.fuzz.strategies import EVENTS, HOSTILE, HOSTILE_DATES, HOSTILE_STRINGS
from tests.metrics.events import broadcast, dossier, scheduled, training, visit_completed, visit_started

pytestmark = pytest.mark.unit
READ = {  # per type family: the data fields some merge or entity key reads
    "dossier": ["dossier_code", "channel", "status", "received_at", "due_at", "ended_at", "fees", "paid_online",
                "digitised", "timeliness"],
    "mobile-team": ["visit_id", "session_id", "request_id", "attendees", "channel", "households_visited",
                    "people_assisted", "dossiers_submitted", "accounts_activated"],
    "announcement": ["announcement_id", "cluster_id", "category", "starts_at", "started_at"],
}
ENVELOPE_READ = ["id", "time", "commune", "province"]
PLAUSIBLE = st.sampled_from([
    None, True, False, 0, 2, 3, 9, 10, "9", "early", "on_time", "late", "online", "zalo", "storm", "C1", "V-1",
    "2025-11-02T00:00:00Z", "2025-11-03T16:59:59Z", "20251104080000", "2025-11-05T10:00:00", [],
    [{"amount_vnd": 8000}], [{"amount_vnd": -1}],
])
"""Values a field metrics reads may well hold: they make the views' own checks and derivations (timeliness,
required dates, order of dates) decide, where hostile values are mostly refused by both decodes at once."""


def as_record(structured: dict[str, Any]) -> tuple[list[tuple[str, bytes]], bytes]:
    """Binary mode: every attribute but `data` as a ce_ header (text), `data` as the value."""
    headers = [(f"ce_{k}", str(v).encode()) for k, v in structured.items() if k != "data"]
    return headers, orjson.dumps(structured.get("data"))


def outcome(decode: decoding.Decode, headers: list[tuple[str, bytes]], value: bytes) -> Event | None:
    try:
        return decode(headers, value)
    except wire.InvalidRecord:
        return None


def merged(event: Event) -> tuple[Any, ...]:
    """What one event does to an empty partition: its changelog record and the commune's counts."""
    part = PartitionState(0, {})
    change = part.apply(event)
    return change, {c: (t.counts, t.due) for c, t in part.communes.items()}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[list[tuple[str, bytes]], bytes]:
    """A schema-drawn event, one field metrics reads (of data or envelope) perhaps replaced by a hostile value."""
    event_type, structured = draw(EVENTS)
    structured = {**structured, "type": event_type}
    where = draw(st.sampled_from(["none", "data", "envelope"]))
    if where == "data" and isinstance(structured.get("data"), dict):
        family = event_type.split(".")[2]
        name = draw(st.sampled_from(READ[family]))
        structured["data"] = {**structured["data"], name: draw(st.one_of(PLAUSIBLE, HOSTILE))}
    elif where == "envelope":
        structured[draw(st.sampled_from(ENVELOPE_READ))] = draw(st.one_of(HOSTILE_STRINGS, HOSTILE_DATES))
    try:
        return as_record(structured)
    except TypeError:  # an integer past 64 bits that orjson will not write (the fuzz tests paste those raw)
        reject()


@settings(max_examples=600, deadline=None, derandomize=True)
@given(mutated())
def test_slim_refuses_only_what_the_full_decode_refuses_and_merges_alike(record: tuple[Any, bytes]) -> None:
    """Refused by the view => refused in full; accepted in full => same envelope and same merge by the view."""
    headers, value = record
    full, thin = outcome(decoding.full, headers, value), outcome(decoding.slim, headers, value)
    if thin is None:
        assert full is None, "the view refused an event the full decode accepts"
        return
    if full is None:
        return  # the view is tolerant of fields metrics never reads
    assert thin.model_dump(exclude={"data"}) == full.model_dump(exclude={"data"})
    assert merged(thin) == merged(full)


def valid(build: Any) -> Any:
    """`build`, or None when the drawn arguments make no valid event (e.g. a broadcast completed before it began)."""
    def attempt(*args: Any) -> Event | None:
        try:
            return build(*args)  # type: ignore[no-any-return]
        except ValidationError:
            return None
    return attempt


HOURS = st.sampled_from([0, 1, 2, 2, 30, 74, 102])
COMMUNE = st.sampled_from(["02269", "05977"])
ID = st.sampled_from(["e1", "e2", "e3"])
ENTITY = st.sampled_from(["X-1", "X-2"])
DOSSIERS = st.builds(
    valid(lambda c, code, status, i, h, ch, due, end, fees, paid, dig: dossier(
        c, code, status, i, h, channel=ch, due_days=due, end_hours=end, fees=fees, paid_online=paid, digitised=dig)),
    COMMUNE, ENTITY, st.integers(1, 10), ID, HOURS, st.sampled_from(["counter", "online"]),
    st.sampled_from([0.5, 1, 3]), st.sampled_from([None, 5, 30, 100]), st.booleans(), st.booleans(), st.booleans())
OTHERS = st.one_of(
    st.builds(valid(visit_completed), COMMUNE, ENTITY, ID, HOURS.map(lambda h: h + 4), st.integers(0, 9),
              st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
    st.builds(valid(visit_started), COMMUNE, ENTITY, ID, HOURS),
    st.builds(valid(training), COMMUNE, ENTITY, ID, HOURS, st.integers(0, 50)),
    st.builds(valid(scheduled), COMMUNE, ENTITY, ID, HOURS, st.sampled_from(["storm", "crop_disease"]), HOURS),
    st.builds(valid(broadcast), COMMUNE, ENTITY, st.sampled_from(["C1", "C2"]),
              st.sampled_from(["started", "completed", "failed"]), ID, HOURS,
              st.sampled_from(["storm", "cultural_event"]), HOURS),
)


def recorded(event: Event, timeliness: str | None) -> tuple[list[tuple[str, bytes]], bytes]:
    """The event's record, its dossier `timeliness` replaced (or dropped): both decodes derive their own."""
    record = wire.encode(event)
    data = orjson.loads(record.value)
    if "timeliness" in data or "status" in data:
        data = {k: v for k, v in data.items() if k != "timeliness"} | ({"timeliness": timeliness} if timeliness else {})
    return record.headers, orjson.dumps(data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.one_of(DOSSIERS, OTHERS), st.sampled_from([None, "early", "late"])),
                min_size=1, max_size=12))
def test_a_sequence_merges_to_the_same_states_and_totals_either_way(events: list[tuple[Event | None, str]]) -> None:
    """Colliding entities, ids and times, in the drawn order: the same store and totals from either decode."""
    parts = {decode: PartitionState(0, {}) for decode in (decoding.full, decoding.slim)}
    for event, timeliness in events:
        if event is None:
            continue
        headers, value = recorded(event, timeliness)
        for decode, part in parts.items():
            part.apply(decode(headers, value))
    full, thin = parts[decoding.full], parts[decoding.slim]
    assert thin.store == full.store
    assert {c: (t.counts, t.due) for c, t in thin.communes.items()} == \
        {c: (t.counts, t.due) for c, t in full.communes.items()}
