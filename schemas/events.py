"""Every canonical event type, by CloudEvents `type` and by family."""

from __future__ import annotations

from enum import StrEnum

from schemas.announcement import (
    AnnouncementScheduledEvent,
    BroadcastCompletedEvent,
    BroadcastFailedEvent,
    BroadcastStartedEvent,
)
from schemas.dossier import DossierStatusChanged
from schemas.envelope import Event
from schemas.mobile_team import (
    SupportAnsweredEvent,
    TrainingHeldEvent,
    VisitCompletedEvent,
    VisitScheduledEvent,
    VisitStartedEvent,
)


class Family(StrEnum):
    DOSSIER = "dossier"
    MOBILE_TEAM = "mobile-team"
    ANNOUNCEMENT = "announcement"


EVENTS_BY_FAMILY: dict[Family, tuple[type[Event], ...]] = {
    Family.DOSSIER: (DossierStatusChanged,),
    Family.MOBILE_TEAM: (
        VisitScheduledEvent,
        VisitStartedEvent,
        VisitCompletedEvent,
        TrainingHeldEvent,
        SupportAnsweredEvent,
    ),
    Family.ANNOUNCEMENT: (
        AnnouncementScheduledEvent,
        BroadcastStartedEvent,
        BroadcastCompletedEvent,
        BroadcastFailedEvent,
    ),
}


def type_name(model: type[Event]) -> str:
    default = model.model_fields["type"].default
    assert isinstance(default, str)
    return default


EVENT_TYPES: dict[str, type[Event]] = {type_name(m): m for ms in EVENTS_BY_FAMILY.values() for m in ms}
FAMILY_OF_TYPE: dict[str, Family] = {type_name(m): f for f, ms in EVENTS_BY_FAMILY.items() for m in ms}
