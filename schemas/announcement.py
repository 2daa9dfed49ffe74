"""Village loudspeaker announcements (loa truyền thanh) and their broadcasts per cluster."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.codes import AnnouncementCategory, Locale, Priority
from schemas.envelope import Event, Model
from schemas.limits import MAX_COUNT, MAX_ITEMS, SAFETY_LIMIT, ItemId, ItemText, identifier, items
from schemas.text import Text
from schemas.times import UtcDateTime

ANNOUNCEMENT_SCHEDULED: Final = "vn.communebus.announcement.scheduled.v1"
BROADCAST_STARTED: Final = "vn.communebus.announcement.broadcast-started.v1"
BROADCAST_COMPLETED: Final = "vn.communebus.announcement.broadcast-completed.v1"
BROADCAST_FAILED: Final = "vn.communebus.announcement.broadcast-failed.v1"


class AnnouncementScheduled(Model):
    announcement_id: str = identifier(min_length=1, max_length=64)
    category: AnnouncementCategory
    priority: Priority = Priority.ROUTINE
    title: Text = Field(min_length=1, max_length=300)
    target_villages: list[ItemText] = items()
    target_clusters: list[ItemId] = items("Loudspeaker cluster ids")
    languages: list[Locale] = Field(default_factory=lambda: [Locale.VI], min_length=1, max_length=MAX_ITEMS,
                                    json_schema_extra={SAFETY_LIMIT: True})
    starts_at: UtcDateTime
    ends_at: UtcDateTime | None = None

    @model_validator(mode="after")
    def _normalise(self) -> AnnouncementScheduled:
        if not self.target_villages and not self.target_clusters:
            raise PydanticCustomError(
                "missing_field", "{field} or target_clusters must name at least one target",
                {"field": "target_villages"},
            )
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise PydanticCustomError("impossible_dates", "{field} is before starts_at", {"field": "ends_at"})
        if self.category.is_emergency:
            self.priority = Priority.EMERGENCY  # emergencies never wait behind routine traffic
        return self


class Broadcast(Model):
    announcement_id: str = identifier(min_length=1, max_length=64)
    cluster_id: str = identifier(min_length=1, max_length=64)
    category: AnnouncementCategory
    priority: Priority = Priority.ROUTINE

    @model_validator(mode="after")
    def _emergency_priority(self) -> Broadcast:
        if self.category.is_emergency:
            self.priority = Priority.EMERGENCY
        return self


class BroadcastStarted(Broadcast):
    started_at: UtcDateTime


class BroadcastCompleted(Broadcast):
    started_at: UtcDateTime
    completed_at: UtcDateTime
    speakers_confirmed: int | None = Field(default=None, ge=0, le=MAX_COUNT, json_schema_extra={SAFETY_LIMIT: True},
                                           description="IP loudspeakers that confirmed playback")

    @model_validator(mode="after")
    def _ends_after_start(self) -> BroadcastCompleted:
        if self.completed_at < self.started_at:
            raise PydanticCustomError("impossible_dates", "{field} is before started_at", {"field": "completed_at"})
        return self


class BroadcastFailed(Broadcast):
    failed_at: UtcDateTime
    failure_reason: Text = Field(min_length=1, max_length=500)


class AnnouncementScheduledEvent(Event):
    type: Literal["vn.communebus.announcement.scheduled.v1"] = ANNOUNCEMENT_SCHEDULED
    data: AnnouncementScheduled


class BroadcastStartedEvent(Event):
    type: Literal["vn.communebus.announcement.broadcast-started.v1"] = BROADCAST_STARTED
    data: BroadcastStarted


class BroadcastCompletedEvent(Event):
    type: Literal["vn.communebus.announcement.broadcast-completed.v1"] = BROADCAST_COMPLETED
    data: BroadcastCompleted


class BroadcastFailedEvent(Event):
    type: Literal["vn.communebus.announcement.broadcast-failed.v1"] = BROADCAST_FAILED
    data: BroadcastFailed


AnnouncementEvent = AnnouncementScheduledEvent | BroadcastStartedEvent | BroadcastCompletedEvent | BroadcastFailedEvent
