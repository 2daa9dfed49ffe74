"""One hand-written valid structured CloudEvent per canonical type (Lạng Sơn commune 05977)."""

from __future__ import annotations

from typing import Any

ENVELOPE = {
    "specversion": "1.0", "source": "/communes/05977/test", "time": "2025-11-03T08:10:26+07:00", "commune": "05977",
    "province": "20",
}
T0, T1 = "2025-11-03T01:10:26Z", "2025-11-03T03:40:00Z"
BROADCAST = {"announcement_id": "A-1", "cluster_id": "05977-C01", "category": "storm"}
VISIT = {"visit_id": "V-1", "team_id": "T01", "village": "Thôn Nà Pàn"}

DATA: dict[str, dict[str, Any]] = {  # CloudEvents type -> a valid `data`: one entry per registered type
    "vn.communebus.dossier.status-changed.v1": {
        "dossier_code": "X05977-251103-0001", "procedure_code": "1.001193", "channel": "online", "status": 9,
        "submitted_at": T0, "received_at": T0, "due_at": "2025-11-05T10:00:00Z", "ended_at": T1,
        "fees": [{"name": "Lệ phí", "amount_vnd": 8000}], "paid_online": True,
        "documents": [{"name": "Tờ khai", "digitised": True}],
        "applicant": {"name": "Nông Văn An", "phone": "0912345678", "preferred_locale": "vi"},
    },
    "vn.communebus.mobile-team.visit-scheduled.v1": {**VISIT, "scheduled_for": T1},
    "vn.communebus.mobile-team.visit-started.v1": {**VISIT, "started_at": T0},
    "vn.communebus.mobile-team.visit-completed.v1": {
        **VISIT, "started_at": T0, "completed_at": T1, "households_visited": 12,
    },
    "vn.communebus.mobile-team.training-held.v1": {
        "session_id": "S-1", "team_id": "T01", "topic": "VNeID", "held_at": T0, "attendees": 40,
    },
    "vn.communebus.mobile-team.support-answered.v1": {
        "request_id": "R-1", "team_id": "T01", "channel": "zalo", "answered_at": T0,
    },
    "vn.communebus.announcement.scheduled.v1": {
        "announcement_id": "A-1", "category": "storm", "title": "Bão số 3", "target_clusters": ["05977-C01"],
        "starts_at": T0,
    },
    "vn.communebus.announcement.broadcast-started.v1": {**BROADCAST, "started_at": T0},
    "vn.communebus.announcement.broadcast-completed.v1": {
        **BROADCAST, "started_at": T0, "completed_at": T1, "speakers_confirmed": 3,
    },
    "vn.communebus.announcement.broadcast-failed.v1": {
        **BROADCAST, "failed_at": T1, "failure_reason": "mất kết nối 4G",
    },
}


def sample(type_name: str) -> dict[str, Any]:
    return {**ENVELOPE, "id": f"sample-{type_name}", "type": type_name, "subject": "S-1", "data": DATA[type_name]}
