"""How each event type changes a partition's state: `HANDLERS`, keyed by CloudEvents type. Pure.

An entry names the model a record of the type is decoded with (a slim view
reading only what the merge needs, `schemas.metrics_views`, or the full model),
the entity an event is about (a state kind, one letter, and the
entity id: together with the commune they make the store key) and the merge that
gives the entity's next state (`services.metrics.state`). `IGNORED` is the
explicit entry of a type no indicator counts. Every registered event type has an
entry; a test fails on a missing one.

The table is read once per event (one dict lookup), so a handler is the merge
function itself, not a wrapper around it. A merge takes the Protocol of what it
reads (`services.metrics.reads`): `handler` has mypy check that the entry's model
provides it, and the full models provide it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, TypeVar, cast

from schemas.announcement import ANNOUNCEMENT_SCHEDULED, BROADCAST_COMPLETED, BROADCAST_FAILED, BROADCAST_STARTED
from schemas.dossier import DOSSIER_STATUS_CHANGED
from schemas.envelope import Event
from schemas.metrics_views import (
    AnnouncementScheduledView,
    BroadcastCompletedView,
    BroadcastFailedView,
    BroadcastStartedView,
    DossierView,
    SupportAnsweredView,
    TrainingHeldView,
    VisitCompletedView,
    VisitScheduledView,
    VisitStartedView,
)
from schemas.mobile_team import SUPPORT_ANSWERED, TRAINING_HELD, VISIT_COMPLETED, VISIT_SCHEDULED, VISIT_STARTED
from services.metrics.aggregate import EntityState
from services.metrics.fast import FastDossier
from services.metrics.state import (
    merge_broadcast_completed,
    merge_broadcast_failed,
    merge_broadcast_started,
    merge_dossier,
    merge_scheduled,
)
from services.metrics.teams import (
    merge_support,
    merge_training,
    merge_visit_completed,
    merge_visit_scheduled,
    merge_visit_started,
)

StateKind = Literal["d", "v", "t", "s", "a"]
"""Dossier, visit, training, support request, announcement: the state a store key holds (`partition.loads`)."""
Decoded = Event | FastDossier
"""What a handler reads: a pydantic model, or a dossier decoded by the fast path (`services.metrics.fast`:
the same attributes)."""
Ident = Callable[[Decoded], str]
Merge = Callable[[EntityState | None, Decoded, int], EntityState | None]
"""The entity's state, the event and its ordering time (µs, `state.believed_until` applied) -> the next state."""
E = TypeVar("E", bound=Event)
S = TypeVar("S", bound=EntityState)


class Handler(NamedTuple):
    model: type[Event]
    """What metrics decodes the type with: a view of it (`schemas.metrics_views`, ADR 0023) or the full model."""
    kind: StateKind
    ident: Ident
    merge: Merge


def handler(model: type[E], kind: StateKind, ident: Callable[[E], str],
            merge: Callable[[S | None, E, int], S | None]) -> Handler:
    """A table entry. The signature ties `ident` and `merge` to `model` for mypy; at run time they are used as is."""
    return Handler(model, kind, cast(Ident, ident), cast(Merge, merge))


IGNORED: Handler | None = None
"""The explicit entry of an event type that changes no indicator."""

HANDLERS: dict[str, Handler | None] = {
    DOSSIER_STATUS_CHANGED: handler(DossierView, "d", lambda e: e.data.dossier_code, merge_dossier),
    VISIT_SCHEDULED: handler(VisitScheduledView, "v", lambda e: e.data.visit_id, merge_visit_scheduled),
    VISIT_STARTED: handler(VisitStartedView, "v", lambda e: e.data.visit_id, merge_visit_started),
    VISIT_COMPLETED: handler(VisitCompletedView, "v", lambda e: e.data.visit_id, merge_visit_completed),
    TRAINING_HELD: handler(TrainingHeldView, "t", lambda e: e.data.session_id, merge_training),
    SUPPORT_ANSWERED: handler(SupportAnsweredView, "s", lambda e: e.data.request_id, merge_support),
    ANNOUNCEMENT_SCHEDULED: handler(AnnouncementScheduledView, "a", lambda e: e.data.announcement_id, merge_scheduled),
    BROADCAST_STARTED: handler(BroadcastStartedView, "a", lambda e: e.data.announcement_id, merge_broadcast_started),
    BROADCAST_COMPLETED: handler(
        BroadcastCompletedView, "a", lambda e: e.data.announcement_id, merge_broadcast_completed),
    BROADCAST_FAILED: handler(BroadcastFailedView, "a", lambda e: e.data.announcement_id, merge_broadcast_failed),
}
