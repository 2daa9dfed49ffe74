"""Canonical events for metrics tests, built with the schema models (no personal data needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiokafka import ConsumerRecord, TopicPartition

from schemas import wire
from schemas.admin import commune_provinces
from schemas.announcement import (
    AnnouncementScheduledEvent,
    BroadcastCompletedEvent,
    BroadcastFailedEvent,
    BroadcastStartedEvent,
)
from schemas.dossier import DossierStatusChanged
from schemas.envelope import Event
from schemas.mobile_team import TrainingHeldEvent, VisitCompletedEvent, VisitStartedEvent

E = TypeVar("E", bound=Event)
T0 = datetime(2025, 11, 3, 1, 0, tzinfo=UTC)  # 08:00 Vietnam time, a Monday


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _envelope(commune: str, event_id: str, hours: float, subject: str, source: str) -> dict[str, Any]:
    return {"id": event_id, "source": f"/communes/{commune}/{source}", "time": at(hours), "subject": subject,
            "commune": commune, "province": commune_provinces()[commune]}


def _event(model: type[E], envelope: dict[str, Any], data: dict[str, Any]) -> E:
    return model.model_validate({**envelope, "data": data})


def dossier(commune: str, code: str, status: int, event_id: str, hours: float, *, channel: str = "counter",
            due_days: float = 3, end_hours: float | None = None, fees: bool = False, paid_online: bool = False,
            digitised: bool = False) -> DossierStatusChanged:
    """A dossier received at T0 (due `due_days` later); completed statuses end at `end_hours`."""
    data: dict[str, Any] = {"dossier_code": code, "procedure_code": "1.001234", "channel": channel, "status": status,
                            "submitted_at": T0, "paid_online": paid_online, "digitised": digitised}
    if status not in (1, 3):
        data |= {"received_at": T0, "due_at": T0 + timedelta(days=due_days)}
    if status in (9, 10):
        data["ended_at"] = at(end_hours if end_hours is not None else hours)
    if status == 10:
        data["returned_at"] = data["ended_at"]
    if fees:
        data["fees"] = [{"name": "Lệ phí", "amount_vnd": 8000}]
    return _event(DossierStatusChanged, _envelope(commune, event_id, hours, code, "one-stop"), data)


def visit_completed(commune: str, visit_id: str, event_id: str, hours: float, households: int, people: int,
                    dossiers: int, accounts: int) -> VisitCompletedEvent:
    data = {"visit_id": visit_id, "team_id": "T-1", "village": "Thôn 1", "started_at": at(hours - 4),
            "completed_at": at(hours), "households_visited": households, "people_assisted": people,
            "dossiers_submitted": dossiers, "accounts_activated": accounts}
    return _event(VisitCompletedEvent, _envelope(commune, event_id, hours, visit_id, "mobile-team"), data)


def visit_started(commune: str, visit_id: str, event_id: str, hours: float) -> VisitStartedEvent:
    data = {"visit_id": visit_id, "team_id": "T-1", "village": "Thôn 1", "started_at": at(hours)}
    return _event(VisitStartedEvent, _envelope(commune, event_id, hours, visit_id, "mobile-team"), data)


def training(commune: str, session_id: str, event_id: str, hours: float, attendees: int) -> TrainingHeldEvent:
    data = {"session_id": session_id, "team_id": "T-1", "topic": "VNeID", "held_at": at(hours), "attendees": attendees}
    return _event(TrainingHeldEvent, _envelope(commune, event_id, hours, session_id, "mobile-team"), data)


def scheduled(commune: str, ann: str, event_id: str, hours: float, category: str = "crop_disease",
              starts_hours: float | None = None) -> AnnouncementScheduledEvent:
    data = {"announcement_id": ann, "category": category, "title": "Thông báo", "target_clusters": ["C1", "C2"],
            "starts_at": at(starts_hours if starts_hours is not None else hours)}
    return _event(AnnouncementScheduledEvent, _envelope(commune, event_id, hours, ann, "loudspeakers"), data)


def broadcast(commune: str, ann: str, cluster: str, outcome: str, event_id: str, hours: float,
              category: str = "crop_disease", started_hours: float | None = None) -> Event:
    base = {"announcement_id": ann, "cluster_id": cluster, "category": category}
    env = _envelope(commune, event_id, hours, ann, "loudspeakers")
    start = at(started_hours if started_hours is not None else hours)
    if outcome == "started":
        return _event(BroadcastStartedEvent, env, base | {"started_at": start})
    if outcome == "completed":
        return _event(BroadcastCompletedEvent, env, base | {"started_at": start, "completed_at": at(hours)})
    return _event(BroadcastFailedEvent, env, base | {"failed_at": at(hours), "failure_reason": "offline"})


Fetch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


def fetch(tp: TopicPartition, first_offset: int, *events: Event) -> Fetch:
    """`events` as the consumer returns them: one fetch of `tp`, offsets from `first_offset` on."""
    records = []
    for offset, rec in enumerate((wire.encode(e) for e in events), first_offset):
        records.append(ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, rec.key, rec.value, None, len(rec.key),
                                      len(rec.value), rec.headers))
    return {tp: records}
