"""Announcement states: the category and clusters of one announcement, whatever the order its events came in."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from structlog.testing import capture_logs

from schemas.admin import commune_provinces
from schemas.announcement import BroadcastCompletedEvent
from schemas.codes import AnnouncementCategory
from schemas.deadletter import Reason, Rejection
from schemas.envelope import Event
from schemas.events import Family
from schemas.limits import EARLIEST, LATEST
from schemas.topics import CANONICAL, METRICS_CHANGELOG
from services.common.settings import KafkaConnection
from services.metrics import telemetry
from services.metrics.ownership import Ownership
from services.metrics.partition import PartitionState, dumps
from services.metrics.state import (
    BELIEVE_ALL,
    DISBELIEVED_SHIFT,
    MAX_CLUSTERS,
    AnnouncementState,
    ClusterBroadcast,
    believed_until,
    micros,
)
from services.metrics.topics import Names
from tests.metrics.events import at, broadcast, fetch, scheduled

pytestmark = pytest.mark.unit
C = "02269"  # Tuyên Quang (08)


def applied(events: tuple[Event, ...]) -> PartitionState:
    part = PartitionState(0, {})
    for e in events:
        part.apply(e)
    return part


def states(part: PartitionState) -> dict[bytes, object]:
    return dict(part.states())


def broadcasts(part: PartitionState) -> dict[tuple[str, ...], int]:
    return {k: v for k, v in part.communes[C].counts.items() if k[0] == "broadcast" and v}


def test_without_a_schedule_the_category_is_the_newest_broadcasts_in_every_order() -> None:
    """Broadcasts that disagree on the category (an announcement escalated to storm) count under the newest
    broadcast's by (time, id), whatever the arrival order; the states are the same in every order too."""
    events = (broadcast(C, "A-1", "C1", "failed", "e1", 1, category="crop_disease"),
              broadcast(C, "A-1", "C2", "failed", "e2", 2, category="storm"),
              broadcast(C, "A-1", "C3", "completed", "e0", 2, category="crop_disease"))  # same time, smaller id
    for order in itertools.permutations(events):
        part = applied(order)
        assert broadcasts(part) == {("broadcast", "storm", "failed"): 2, ("broadcast", "storm", "completed"): 1}
        assert states(part) == states(applied(events))


def test_a_scheduled_event_sets_the_category_in_every_order() -> None:
    """Once the scheduled event is seen its category wins over every broadcast's, before or after it."""
    events = (broadcast(C, "A-1", "C1", "failed", "e1", 3, category="storm"),
              scheduled(C, "A-1", "s1", 0, category="severe_cold"),
              broadcast(C, "A-1", "C2", "completed", "e2", 2, category="crop_disease"))
    for order in itertools.permutations(events):
        part = applied(order)
        assert broadcasts(part) == {("broadcast", "severe_cold", "failed"): 1,
                                    ("broadcast", "severe_cold", "completed"): 1}
        assert states(part) == states(applied(events))


def test_a_state_written_before_the_newest_broadcast_was_kept_restores_and_merges() -> None:
    """A changelog state of five members (no newest broadcast) restores with the same figures, and the next
    broadcast sets the category as any newer one would."""
    legacy = (b'["crop_disease",null,null,null,{"C1":[2,1762131600000000,"e1","failed",null]}]')
    part = PartitionState(0, {})
    part.restore(b"a|02269|A-1", legacy)
    assert broadcasts(part) == {("broadcast", "crop_disease", "failed"): 1}
    part.apply(broadcast(C, "A-1", "C2", "failed", "e2", 0.5, category="storm"))
    assert broadcasts(part) == {("broadcast", "storm", "failed"): 2}


KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's default `message.max.bytes` (the record batch, header included): what a topic without a
`max.message.bytes` of its own accepts on a cluster that keeps the default (infra/kafka raises it to 10 MiB)."""
BATCH_OVERHEAD = 61 + 5 * 5 + 1
"""A record batch's header, and one record's length, delta and size varints and its attributes (no headers)."""
WIDE = "\U0010fffd"
"""A character of four UTF-8 bytes (no control character: identifiers allow it): ids at their longest in bytes."""


def longest(max_length: int, n: int) -> str:
    """An identifier of `max_length` characters, all of four bytes, told apart by `n`."""
    return f"{WIDE * (max_length - 6)}{n:06d}"


WIDEST_AT = EARLIEST
"""The event time whose ordering time is longest in JSON: disbelieved (a clock before it), the earliest time is the
most negative ordering time (17 characters; a believed time has at most 16)."""
CLOCK = believed_until(EARLIEST.timestamp() - 7200)


def widest_broadcast(ann: str, n: int) -> BroadcastCompletedEvent:
    """A completed broadcast whose every member the state keeps is at its longest (applied at `CLOCK`)."""
    env = {"id": longest(128, n), "source": longest(256, n), "time": WIDEST_AT, "subject": ann, "commune": C,
           "province": commune_provinces()[C]}
    data = {"announcement_id": ann, "cluster_id": longest(64, n), "category": longest_category(),
            "started_at": LATEST - timedelta(hours=1), "completed_at": LATEST}
    return BroadcastCompletedEvent.model_validate({**env, "data": data})


def longest_category() -> str:
    return max((c.value for c in AnnouncementCategory), key=len)


def at_the_cap(ann: str) -> PartitionState:
    """A partition holding announcement `ann` with MAX_CLUSTERS - 1 clusters, each as wide as a state holds."""
    at = micros(widest_broadcast(ann, 0)) - DISBELIEVED_SHIFT
    assert len(str(at)) > len(str(BELIEVE_ALL))
    started = int((LATEST - timedelta(hours=1)).timestamp())
    clusters = {longest(64, n): ClusterBroadcast(2, at, longest(128, n), "completed", started)
                for n in range(1, MAX_CLUSTERS)}
    state = AnnouncementState(longest_category(), at, longest(128, 0), started, clusters, at,
                              longest(128, MAX_CLUSTERS))
    part = PartitionState(0, {})
    part.restore(f"a|{C}|{ann}".encode(), dumps(state))
    return part


def at_cap_of_failures(part: PartitionState) -> PartitionState:
    """`part` with announcement A-1 broadcast (failed) to MAX_CLUSTERS clusters C0, C1, ... (restored: quicker than
    a thousand merges of a growing state)."""
    first = broadcast(C, "A-1", "C0", "failed", "e0", 1)
    clusters = {f"C{n}": ClusterBroadcast(2, micros(first), f"e{n}", "failed", None) for n in range(MAX_CLUSTERS)}
    state = AnnouncementState("crop_disease", None, None, None, clusters, micros(first), f"e{MAX_CLUSTERS - 1}")
    part.restore(f"a|{C}|A-1".encode(), dumps(state))
    return part


def test_the_largest_announcement_state_fits_in_one_changelog_record() -> None:
    """An announcement at MAX_CLUSTERS clusters, every id at its longest in four-byte characters and every time
    at its longest, makes one changelog record within the changelog topic's max.message.bytes (the broker refused
    a bigger one, and the partition's metrics crash-looped on it)."""
    ann = longest(64, 0)
    part = at_the_cap(ann)
    out = part.apply(widest_broadcast(ann, 0), CLOCK)
    assert isinstance(out, tuple)
    key, value = out
    state = dict(part.states())[key]
    assert isinstance(state, AnnouncementState) and len(state.clusters) == MAX_CLUSTERS
    limit = int(METRICS_CHANGELOG.config.get("max.message.bytes", KAFKA_DEFAULT_MAX_MESSAGE_BYTES))
    assert len(key) + len(value) + BATCH_OVERHEAD <= limit


def test_a_broadcast_past_the_cluster_cap_is_refused_and_changes_nothing() -> None:
    """One more cluster than MAX_CLUSTERS is refused as too_large without naming any id: the store and figures
    stay as they were; a broadcast of a cluster already held still applies."""
    part = at_cap_of_failures(PartitionState(0, {}))
    assert broadcasts(part) == {("broadcast", "crop_disease", "failed"): MAX_CLUSTERS}
    before = (dict(part.store), dict(part.communes[C].counts))
    out = part.apply(broadcast(C, "A-1", "C-extra", "failed", "e-extra", 2))
    assert isinstance(out, Rejection) and out.reason is Reason.TOO_LARGE
    assert "A-1" not in out.message and "C-extra" not in out.message and "e-extra" not in out.message
    assert (dict(part.store), dict(part.communes[C].counts)) == before
    assert isinstance(part.apply(broadcast(C, "A-1", "C0", "completed", "e-done", 2)), tuple)
    assert broadcasts(part) == {("broadcast", "crop_disease", "failed"): MAX_CLUSTERS - 1,
                                ("broadcast", "crop_disease", "completed"): 1}


def test_the_worker_counts_a_refused_broadcast_as_skipped_and_goes_on(tmp_path: Path) -> None:
    """In a batch, the broadcast past the cap is counted `skipped` and logged with its offset and reason (no
    id); the events after it apply."""
    names = Names("")
    owner = Ownership(KafkaConnection(bootstrap="127.0.0.1:1"), names, tmp_path, "test", new_writer=None)
    owner.partitions[0] = at_cap_of_failures(PartitionState(0, {}))
    owner.owned = {0}  # as `assign` leaves it
    tp = TopicPartition(CANONICAL[Family.ANNOUNCEMENT].name, 0)
    batch = fetch(tp, 7, broadcast(C, "A-1", "C-extra", "failed", "e-extra", 2), scheduled(C, "A-1", "s1", 0))
    skipped = telemetry.EVENTS.labels("announcement", "skipped")
    before = skipped._value.get()
    with capture_logs() as logs:
        changes, offsets = owner.apply(batch, at(24).timestamp())
    assert skipped._value.get() == before + 1
    assert offsets == {tp: 9} and list(changes[0]) == [f"a|{C}|A-1".encode()]
    assert [(e["event"], e["offset"], e["reason"]) for e in logs] == [("event.skipped", 7, "too_large")]
    assert "A-1" not in str(logs) and "C-extra" not in str(logs)
