"""Mobile public-administration teams and community digital-technology teams."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.codes import SupportChannel
from schemas.envelope import Event, Model
from schemas.limits import ItemText, identifier, items
from schemas.text import NFC, Text
from schemas.times import UtcDateTime

VISIT_SCHEDULED: Final = "vn.communebus.mobile-team.visit-scheduled.v1"
VISIT_STARTED: Final = "vn.communebus.mobile-team.visit-started.v1"
VISIT_COMPLETED: Final = "vn.communebus.mobile-team.visit-completed.v1"
TRAINING_HELD: Final = "vn.communebus.mobile-team.training-held.v1"
SUPPORT_ANSWERED: Final = "vn.communebus.mobile-team.support-answered.v1"

Count = Field(default=0, ge=0, le=100_000)


class VisitRef(Model):
    visit_id: str = identifier(min_length=1, max_length=64)
    team_id: str = identifier(min_length=1, max_length=64)
    village: Text = Field(min_length=1, max_length=200, description="Village (thôn/ấp/bản) visited")


class VisitScheduled(VisitRef):
    scheduled_for: UtcDateTime
    planned_activities: list[ItemText] = items()


class VisitStarted(VisitRef):
    started_at: UtcDateTime


class VisitCompleted(VisitRef):
    started_at: UtcDateTime
    completed_at: UtcDateTime
    households_visited: int = Count
    people_assisted: int = Count
    dossiers_submitted: int = Count
    accounts_activated: int = Field(default=0, ge=0, le=100_000, description="VNeID level-2 accounts activated")

    @model_validator(mode="after")
    def _ends_after_start(self) -> VisitCompleted:
        if self.completed_at < self.started_at:
            raise PydanticCustomError("impossible_dates", "{field} is before started_at", {"field": "completed_at"})
        return self


class TrainingHeld(Model):
    session_id: str = identifier(min_length=1, max_length=64)
    team_id: str = identifier(min_length=1, max_length=64)
    topic: Text = Field(min_length=1, max_length=300)
    village: Annotated[str, Field(max_length=200), NFC] | None = None
    held_at: UtcDateTime
    attendees: int = Field(ge=0, le=100_000)


class SupportAnswered(Model):
    request_id: str = identifier(min_length=1, max_length=64)
    team_id: str = identifier(min_length=1, max_length=64)
    channel: SupportChannel
    answered_at: UtcDateTime


class VisitScheduledEvent(Event):
    type: Literal["vn.communebus.mobile-team.visit-scheduled.v1"] = VISIT_SCHEDULED
    data: VisitScheduled


class VisitStartedEvent(Event):
    type: Literal["vn.communebus.mobile-team.visit-started.v1"] = VISIT_STARTED
    data: VisitStarted


class VisitCompletedEvent(Event):
    type: Literal["vn.communebus.mobile-team.visit-completed.v1"] = VISIT_COMPLETED
    data: VisitCompleted


class TrainingHeldEvent(Event):
    type: Literal["vn.communebus.mobile-team.training-held.v1"] = TRAINING_HELD
    data: TrainingHeld


class SupportAnsweredEvent(Event):
    type: Literal["vn.communebus.mobile-team.support-answered.v1"] = SUPPORT_ANSWERED
    data: SupportAnswered


MobileTeamEvent = (
    VisitScheduledEvent | VisitStartedEvent | VisitCompletedEvent | TrainingHeldEvent | SupportAnsweredEvent
)
