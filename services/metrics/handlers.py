"""How each event type changes a partition's state: `HANDLERS`, keyed by CloudEvents type. Pure.

An entry names the entity an event is about (a state kind, one letter, and the
entity id: together with the commune they make the store key) and the merge that
gives the entity's next state (`services.metrics.state`). `IGNORED` is the
explicit entry of a type no indicator counts. Every registered event type has an
entry; a test fails on a missing one.

The table is read once per event (one dict lookup), so a handler is the merge
function itself, not a wrapper around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, TypeVar, cast

from schemas.announcement import (
    ANNOUNCEMENT_SCHEDULED,
    BROADCAST_COMPLETED,
    BROADCAST_FAILED,
    BROADCAST_STARTED,
    AnnouncementScheduledEvent,
    BroadcastCompletedEvent,
    BroadcastFailedEvent,
    BroadcastStartedEvent,
)
from schemas.dossier import DOSSIER_STATUS_CHANGED, DossierStatusChanged
from schemas.envelope import Event
from schemas.mobile_team import (
    SUPPORT_ANSWERED,
    TRAINING_HELD,
    VISIT_COMPLETED,
    VISIT_SCHEDULED,
    VISIT_STARTED,
    SupportAnsweredEvent,
    TrainingHeldEvent,
    VisitCompletedEvent,
    VisitScheduledEvent,
    VisitStartedEvent,
)
from services.metrics.aggregate import EntityState
from services.metrics.state import merge_announcement, merge_dossier, merge_support, merge_training, merge_visit

StateKind = Literal["d", "v", "t", "s", "a"]
"""Dossier, visit, training, support request, announcement: the state a store key holds (`partition.loads`)."""
Ident = Callable[[Event], str]
Merge = Callable[[EntityState | None, Event], EntityState | None]
E = TypeVar("E", bound=Event)
S = TypeVar("S", bound=EntityState)


class Handler(NamedTuple):
    model: type[Event]
    kind: StateKind
    ident: Ident
    merge: Merge


def handler(model: type[E], kind: StateKind, ident: Callable[[E], str],
            merge: Callable[[S | None, E], S | None]) -> Handler:
    """A table entry. The signature ties `ident` and `merge` to `model` for mypy; at run time they are used as is."""
    return Handler(model, kind, cast(Ident, ident), cast(Merge, merge))


IGNORED: Handler | None = None
"""The explicit entry of an event type that changes no indicator."""

HANDLERS: dict[str, Handler | None] = {
    DOSSIER_STATUS_CHANGED: handler(DossierStatusChanged, "d", lambda e: e.data.dossier_code, merge_dossier),
    VISIT_SCHEDULED: handler(VisitScheduledEvent, "v", lambda e: e.data.visit_id, merge_visit),
    VISIT_STARTED: handler(VisitStartedEvent, "v", lambda e: e.data.visit_id, merge_visit),
    VISIT_COMPLETED: handler(VisitCompletedEvent, "v", lambda e: e.data.visit_id, merge_visit),
    TRAINING_HELD: handler(TrainingHeldEvent, "t", lambda e: e.data.session_id, merge_training),
    SUPPORT_ANSWERED: handler(SupportAnsweredEvent, "s", lambda e: e.data.request_id, merge_support),
    ANNOUNCEMENT_SCHEDULED: handler(
        AnnouncementScheduledEvent, "a", lambda e: e.data.announcement_id, merge_announcement),
    BROADCAST_STARTED: handler(BroadcastStartedEvent, "a", lambda e: e.data.announcement_id, merge_announcement),
    BROADCAST_COMPLETED: handler(BroadcastCompletedEvent, "a", lambda e: e.data.announcement_id, merge_announcement),
    BROADCAST_FAILED: handler(BroadcastFailedEvent, "a", lambda e: e.data.announcement_id, merge_announcement),
}
