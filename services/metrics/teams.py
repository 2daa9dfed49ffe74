"""How a mobile team's event merges into its visit's, training's or support request's state (`state`'s rules).

A state is the newest report by its leading fields: (rank, time, id) for a visit, whose completion stays however
late a start is reported; (time, id) for the others. A visit also keeps the time of its newest event of any rank
(`VisitState.newest_at`): the commune's last event time (`aggregate.latest_micros`) is then the newest event's
whatever the order, and a restore from the changelog gives it back.
"""

from __future__ import annotations

from typing import TypeVar

from services.metrics.reads import Stamped, SupportDone, TrainingDone, VisitDone
from services.metrics.state import SupportState, TrainingState, VisitState


def visit_scheduled(event: Stamped, at: int) -> VisitState:
    return VisitState(0, at, event.id, 0, 0, 0, 0)


def visit_started(event: Stamped, at: int) -> VisitState:
    return VisitState(1, at, event.id, 0, 0, 0, 0)


def visit_completed(event: VisitDone, at: int) -> VisitState:
    d = event.data
    return VisitState(2, at, event.id, d.households_visited, d.people_assisted, d.dossiers_submitted,
                      d.accounts_activated)


S = TypeVar("S", TrainingState, SupportState)


def merge_latest(old: S | None, new: S) -> S | None:
    """Keep the greater of two states ordered by time, then event id (then the figure, for one event sent again with
    another); None if unchanged."""
    if old is None:
        return new
    return new if new > old else None


def merge_visit(old: VisitState | None, new: VisitState) -> VisitState | None:
    """The newer report by (rank, time, id), with the time of the visit's newest event when it is later than that
    report's (a start reported after the completion, dated after it); None if unchanged."""
    if old is None:
        return new
    kept = new if new[:3] > old[:3] else old
    newest = max(new.at, old.at if old.newest_at is None else old.newest_at)
    merged = kept._replace(newest_at=newest if newest > kept.at else None)
    return None if merged == old else merged


def merge_visit_scheduled(old: VisitState | None, event: Stamped, at: int) -> VisitState | None:
    return merge_visit(old, visit_scheduled(event, at))


def merge_visit_started(old: VisitState | None, event: Stamped, at: int) -> VisitState | None:
    return merge_visit(old, visit_started(event, at))


def merge_visit_completed(old: VisitState | None, event: VisitDone, at: int) -> VisitState | None:
    return merge_visit(old, visit_completed(event, at))


def merge_training(old: TrainingState | None, event: TrainingDone, at: int) -> TrainingState | None:
    return merge_latest(old, TrainingState(at, event.id, event.data.attendees))


def merge_support(old: SupportState | None, event: SupportDone, at: int) -> SupportState | None:
    return merge_latest(old, SupportState(at, event.id, event.data.channel.value))
