"""Announcement states: the category and clusters of one announcement, whatever the order its events came in."""

from __future__ import annotations

import itertools

import pytest

from schemas.envelope import Event
from services.metrics.partition import PartitionState
from tests.metrics.events import broadcast, scheduled

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
