"""The views metrics decodes canonical events with: per event type, the fields its merge reads (ADR 0023).

Each `data` view declares, with the registered model's own definition (`views.same_as`), the entity id
metrics keys its state by and the fields the merge in `services/metrics/state.py` reads; the envelope is
the full `Event`'s. `METRICS_VIEWS` maps every canonical type to its view; a test checks that it covers
the registry, that every field is defined as the registered model defines it, and (hypothesis, the full
decode as oracle) that a view gives the same figures as the full model.

A dossier's `timeliness` is derived here as the full model derives it (from the end and due days, for a
completed status, whatever the record says), and of the full model's date checks those between the
dates read here are kept; the others concern fields metrics never reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from schemas.announcement import (
    ANNOUNCEMENT_SCHEDULED,
    BROADCAST_COMPLETED,
    BROADCAST_FAILED,
    BROADCAST_STARTED,
    AnnouncementScheduled,
    BroadcastStarted,
)
from schemas.codes import (
    COMPLETED_STATUSES,
    OPEN_STATUSES,
    AnnouncementCategory,
    Channel,
    DossierStatus,
    SupportChannel,
    Timeliness,
)
from schemas.dossier import DOSSIER_STATUS_CHANGED, DossierData, Fee, timeliness_of
from schemas.envelope import Event
from schemas.mobile_team import (
    SUPPORT_ANSWERED,
    TRAINING_HELD,
    VISIT_COMPLETED,
    VISIT_SCHEDULED,
    VISIT_STARTED,
    SupportAnswered,
    TrainingHeld,
    VisitCompleted,
    VisitRef,
)
from schemas.times import UtcDateTime
from schemas.views import View, same_as


# -- dossiers --------------------------------------------------------------------------------------
class DossierFacts(View):
    dossier_code: str = same_as(DossierData, "dossier_code")
    channel: Channel = same_as(DossierData, "channel")
    status: DossierStatus = same_as(DossierData, "status")
    received_at: UtcDateTime | None = same_as(DossierData, "received_at")
    due_at: UtcDateTime | None = same_as(DossierData, "due_at")
    ended_at: UtcDateTime | None = same_as(DossierData, "ended_at")
    fees: list[Fee] = same_as(DossierData, "fees")
    paid_online: bool = same_as(DossierData, "paid_online")
    digitised: bool = same_as(DossierData, "digitised")
    timeliness: Timeliness | None = same_as(DossierData, "timeliness")

    @model_validator(mode="after")
    def _consistent(self) -> DossierFacts:
        """`DossierData._consistent` restricted to the dates read here: required ones, order, timeliness."""
        for name in REQUIRED_DATES[self.status]:
            if getattr(self, name) is None:
                raise PydanticCustomError("missing_field", "{field} is required for status {status}",
                                          {"field": name, "status": int(self.status)})
        received = self.received_at
        if received is not None:
            for later, b in (("ended_at", self.ended_at), ("due_at", self.due_at)):
                if b is not None and b < received:
                    raise PydanticCustomError(
                        "impossible_dates", "{later} ({b}) is before {earlier} ({a})",
                        {"field": later, "later": later, "earlier": "received_at", "a": received.isoformat(),
                         "b": b.isoformat()})
        completed = self.status in COMPLETED_STATUSES
        self.__dict__["timeliness"] = timeliness_of(self.ended_at, self.due_at) if completed else None
        return self


REQUIRED_DATES = {status: tuple(name for name, needed in (
    ("received_at", status in OPEN_STATUSES or status in COMPLETED_STATUSES),
    ("due_at", status in OPEN_STATUSES or status in COMPLETED_STATUSES),
    ("ended_at", status in COMPLETED_STATUSES),
) if needed) for status in DossierStatus}
"""Of the dates read here, which each status needs (`schemas.dossier` requires them for the same statuses)."""


class DossierView(Event):
    type: Literal["vn.communebus.dossier.status-changed.v1"] = DOSSIER_STATUS_CHANGED
    data: DossierFacts


# -- mobile teams ----------------------------------------------------------------------------------
class VisitFacts(View):
    visit_id: str = same_as(VisitRef, "visit_id")


class VisitCompletedFacts(VisitFacts):
    households_visited: int = same_as(VisitCompleted, "households_visited")
    people_assisted: int = same_as(VisitCompleted, "people_assisted")
    dossiers_submitted: int = same_as(VisitCompleted, "dossiers_submitted")
    accounts_activated: int = same_as(VisitCompleted, "accounts_activated")


class TrainingFacts(View):
    session_id: str = same_as(TrainingHeld, "session_id")
    attendees: int = same_as(TrainingHeld, "attendees")


class SupportFacts(View):
    request_id: str = same_as(SupportAnswered, "request_id")
    channel: SupportChannel = same_as(SupportAnswered, "channel")


class VisitScheduledView(Event):
    type: Literal["vn.communebus.mobile-team.visit-scheduled.v1"] = VISIT_SCHEDULED
    data: VisitFacts


class VisitStartedView(Event):
    type: Literal["vn.communebus.mobile-team.visit-started.v1"] = VISIT_STARTED
    data: VisitFacts


class VisitCompletedView(Event):
    type: Literal["vn.communebus.mobile-team.visit-completed.v1"] = VISIT_COMPLETED
    data: VisitCompletedFacts


class TrainingHeldView(Event):
    type: Literal["vn.communebus.mobile-team.training-held.v1"] = TRAINING_HELD
    data: TrainingFacts


class SupportAnsweredView(Event):
    type: Literal["vn.communebus.mobile-team.support-answered.v1"] = SUPPORT_ANSWERED
    data: SupportFacts


# -- announcements ---------------------------------------------------------------------------------
class ScheduledFacts(View):
    announcement_id: str = same_as(AnnouncementScheduled, "announcement_id")
    category: AnnouncementCategory = same_as(AnnouncementScheduled, "category")
    starts_at: datetime = same_as(AnnouncementScheduled, "starts_at")


class BroadcastFacts(View):
    announcement_id: str = same_as(BroadcastStarted, "announcement_id")
    cluster_id: str = same_as(BroadcastStarted, "cluster_id")
    category: AnnouncementCategory = same_as(BroadcastStarted, "category")


class BroadcastStartedFacts(BroadcastFacts):
    started_at: datetime = same_as(BroadcastStarted, "started_at")


class AnnouncementScheduledView(Event):
    type: Literal["vn.communebus.announcement.scheduled.v1"] = ANNOUNCEMENT_SCHEDULED
    data: ScheduledFacts


class BroadcastStartedView(Event):
    type: Literal["vn.communebus.announcement.broadcast-started.v1"] = BROADCAST_STARTED
    data: BroadcastStartedFacts


class BroadcastCompletedView(Event):
    type: Literal["vn.communebus.announcement.broadcast-completed.v1"] = BROADCAST_COMPLETED
    data: BroadcastStartedFacts


class BroadcastFailedView(Event):
    type: Literal["vn.communebus.announcement.broadcast-failed.v1"] = BROADCAST_FAILED
    data: BroadcastFacts


METRICS_VIEWS: dict[str, type[Event]] = {
    DOSSIER_STATUS_CHANGED: DossierView,
    VISIT_SCHEDULED: VisitScheduledView,
    VISIT_STARTED: VisitStartedView,
    VISIT_COMPLETED: VisitCompletedView,
    TRAINING_HELD: TrainingHeldView,
    SUPPORT_ANSWERED: SupportAnsweredView,
    ANNOUNCEMENT_SCHEDULED: AnnouncementScheduledView,
    BROADCAST_STARTED: BroadcastStartedView,
    BROADCAST_COMPLETED: BroadcastCompletedView,
    BROADCAST_FAILED: BroadcastFailedView,
}
"""CloudEvents type -> the view metrics decodes it with."""
