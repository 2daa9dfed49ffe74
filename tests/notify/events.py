"""Canonical events and a directory for notify tests (fictitious people and numbers)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from schemas.admin import communes_of
from schemas.announcement import AnnouncementScheduledEvent, BroadcastFailedEvent
from schemas.dossier import DossierStatusChanged
from schemas.mobile_team import VisitCompletedEvent, VisitScheduledEvent
from schemas.times import VIETNAM
from schemas.topics import PARTITIONS
from services.common.partitioner import partition_for
from services.notify.directory import Directory

COMMUNE, PROVINCE = "02269", "08"
PHONE = "0912345678"


def day_ending_in(seconds: float, now: datetime | None = None) -> tuple[str, datetime]:
    """`NOTIFY_DEADLINE_CLOCK_AHEAD_S` for a deadline tracker whose clock reaches the end of a Vietnam day `seconds`
    from `now` (the wall clock), and the tracker's time at `now`. A dossier due on that day (by the tracker's clock)
    becomes overdue then, one due the day before is overdue at once: overdue begins when the due day is over, so a
    test can no longer make a dossier overdue within seconds by its due time alone."""
    now = now or datetime.now(UTC)
    local = now.astimezone(VIETNAM)
    day_end = datetime.combine(local.date() + timedelta(days=1), time(), VIETNAM)
    ahead = ((day_end - local).total_seconds() - seconds) % 86_400
    return repr(ahead), now + timedelta(seconds=ahead)


def one_commune_per_partition() -> list[str]:
    """Communes of the province, one per canonical partition (events are keyed by commune): a burst over them gives
    every worker of the group work, whichever partitions it is assigned."""
    by_partition: dict[int, str] = {}
    for commune in communes_of(PROVINCE):
        by_partition.setdefault(partition_for(commune.encode(), PARTITIONS), commune)
    assert len(by_partition) == PARTITIONS
    return [by_partition[p] for p in sorted(by_partition)]


def dossier(event_id: str = "evt-1", status: int = 2, locale: str = "vi", code: str = "TL-251101-0002",
            due_at: datetime | None = None, commune: str = COMMUNE, **data: Any) -> DossierStatusChanged:
    received = datetime(2025, 11, 3, 1, 5, tzinfo=UTC)
    body: dict[str, Any] = {
        "dossier_code": code, "procedure_code": "1.001234", "procedure_name": "Đăng ký khai sinh",
        "channel": "counter", "status": status, "submitted_at": received, "received_at": received,
        "due_at": due_at or datetime(2025, 11, 7, 10, 0, tzinfo=UTC), "assigned_officer_id": "cb-01",
        "applicant": {"name": "Trần Văn Minh", "phone": PHONE, "preferred_locale": locale},
    }
    if status in (9, 10):
        body["ended_at"] = body["due_at"]
    if status == 10:
        body["returned_at"] = body["due_at"]
    body.update(data)
    return DossierStatusChanged.model_validate({
        # sent now (its dates are last year's): a status message goes stale `timing.STATUS_MESSAGE_WINDOW` after it
        "id": event_id, "source": f"/communes/{commune}/one-stop", "time": datetime.now(UTC), "subject": code,
        "commune": commune,
        "province": PROVINCE, "data": body})


def storm(event_id: str = "ann-1", category: str = "storm") -> AnnouncementScheduledEvent:
    t = datetime.now(UTC)
    return AnnouncementScheduledEvent.model_validate({
        "id": event_id, "source": "/communes/02269/loudspeakers", "time": t, "subject": "A-1", "commune": COMMUNE,
        "province": PROVINCE,
        "data": {"announcement_id": "A-1", "category": category, "title": "Bão số 13", "target_clusters": ["C1"],
                 "target_villages": ["Thôn Nà Tàng"], "starts_at": t + timedelta(minutes=30)}})


def visit_scheduled(event_id: str = "visit-s-1", when: datetime | None = None) -> VisitScheduledEvent:
    when = when or datetime(2025, 11, 10, 1, 30, tzinfo=UTC)
    return VisitScheduledEvent.model_validate({
        "id": event_id, "source": "/communes/02269/mobile", "time": when - timedelta(days=5), "subject": "V-7",
        "commune": COMMUNE, "province": PROVINCE,
        "data": {"visit_id": "V-7", "team_id": "T-3", "village": "Thôn Nà Tàng", "scheduled_for": when}})


def visit_completed(event_id: str = "visit-c-1") -> VisitCompletedEvent:
    t = datetime(2025, 11, 2, 9, 0, tzinfo=UTC)
    return VisitCompletedEvent.model_validate({  # reported now: its summary is not stale
        "id": event_id, "source": "/communes/02269/mobile", "time": datetime.now(UTC), "subject": "V-7",
        "commune": COMMUNE,
        "province": PROVINCE,
        "data": {"visit_id": "V-7", "team_id": "T-3", "village": "Thôn Nà Tàng", "started_at": t - timedelta(hours=6),
                 "completed_at": t, "households_visited": 41, "people_assisted": 63}})


def broadcast_failed(event_id: str = "bf-1", category: str = "general") -> BroadcastFailedEvent:
    t = datetime(2025, 11, 2, 9, 0, tzinfo=UTC)
    return BroadcastFailedEvent.model_validate({
        "id": event_id, "source": "/communes/02269/loudspeakers", "time": t, "subject": "A-1", "commune": COMMUNE,
        "province": PROVINCE,
        "data": {"announcement_id": "A-1", "cluster_id": "C1", "category": category, "failed_at": t,
                 "failure_reason": "amplifier offline"}})


def directory(email_port: int | None = None) -> Directory:
    return Directory.model_validate({"communes": {"*": {
        "centre": [{"ref": "centre:inbox", "channel": "email", "email": "centre@example.gov.vn"}],
        "centre_head": [{"ref": "centre:head", "channel": "email", "email": "head@example.gov.vn"}],
        "operators": [{"ref": "operator:loa", "channel": "sms", "phone": "0900000001"}],
        "officers": {"cb-01": {"ref": "officer:cb-01", "channel": "email", "email": "cb01@example.gov.vn"}},
        "villages": {"*": [{"ref": "village:head", "channel": "sms", "phone": "0900000002", "locale": "km"}]},
        "clusters": {"C1": [{"ref": "operator:c1", "channel": "sms", "phone": "0900000004"}]},
    }}})
