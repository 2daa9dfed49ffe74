"""Hand-made raw records for tests: one valid of each shape, and one of each way to be wrong."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.deadletter import Reason
from schemas.events import Family

COMMUNE = "02269"  # Xã Thượng Lâm, Tuyên Quang
PROVINCE = "08"


def portal_dossier(code: str = "TL-251101-0001", status: int = 4, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "MaHoSo": code, "MaTTHC": "1.001234", "TenTTHC": "Đăng ký khai sinh", "MaLinhVuc": "HT",
        "KenhThucHien": 2, "TrangThaiHoSo": status, "NgayNopHoSo": "20251101080000",
        "NgayTiepNhan": "2025-11-01T09:00:00", "NgayHenTra": "20251105170000",
        "ChuHoSo": "Nguyễn Thị Lan", "SoGiayToChuHoSo": "008123456789", "SoDienThoaiChuHoSo": "0912345678",
        "DuocThanhToanTrucTuyen": 1, "HoSoCoThanhPhanSoHoa": True,
        "TaiLieuNop": [{"TenTaiLieu": "Tờ khai", "DuocSoHoa": True, "DuocTaiSuDung": False}],
        "DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí", "MucPhi": 8000}],
    }
    if status in (9, 10):
        d["NgayKetThucXuLy"] = "20251104100000"
    if status == 10:
        d["NgayTra"] = "20251104150000"
    d.update(extra)
    return d


def dossier_code(seq: int, agency: str = "TL", day: datetime | None = None) -> str:
    """A dossier code in the portal's shape (`{agency}-{yyMMdd}-{seq}`, DOMAIN.md; today's unless `day`): none
    identifies anyone by `schemas.lookup`'s rules, as a random run can (`TL-091234-0402` holds a phone's ten digits:
    intake keeps no lookup name of it, and a trace by it found nothing, CI 2026-12-07)."""
    return f"{agency}-{(day or datetime.now(UTC)):%y%m%d}-{seq:04d}"


SAMPLE_DAY = datetime(2025, 11, 1, tzinfo=UTC)
"""The day the samples' dossiers were submitted."""
_COMPACT = re.compile(r"^\d{14}$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def recent(sample: Any, now: datetime | None = None) -> Any:
    """`sample` with every time in it moved by whole days so that it was submitted yesterday: a citizen's status
    message goes stale `timing.STATUS_MESSAGE_WINDOW` after its event, and the samples date from 2025."""
    days = timedelta(days=((now or datetime.now(UTC)) - SAMPLE_DAY).days - 1)
    if isinstance(sample, dict):
        return {k: recent(v, now) for k, v in sample.items()}
    if isinstance(sample, list):
        return [recent(v, now) for v in sample]
    if isinstance(sample, str) and _COMPACT.match(sample):
        return (datetime.strptime(sample, "%Y%m%d%H%M%S") + days).strftime("%Y%m%d%H%M%S")
    if isinstance(sample, str) and _ISO.match(sample):
        moved = datetime.fromisoformat(sample) + days
        return moved.isoformat()
    return sample


def canonical_dossier(event_id: str = "evt-1", status: int = 2, **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dossier_code": "TL-251101-0002", "procedure_code": "1.001234", "channel": "counter", "status": status,
        "submitted_at": "2025-11-01T08:00:00", "received_at": "2025-11-01T08:05:00", "due_at": "2025-11-05T17:00:00",
        "applicant": {"name": "Trần Văn Minh", "phone": "0987654321", "preferred_locale": "km"},
    }
    body.update(data)
    return {
        "specversion": "1.0", "id": event_id, "source": "/communes/02269/one-stop",
        "type": "vn.communebus.dossier.status-changed.v1", "time": "2025-11-01T08:05:00",
        "subject": body["dossier_code"], "commune": COMMUNE, "province": PROVINCE, "data": body,
    }


def visit_completed(event_id: str = "visit-1") -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": event_id, "source": "/communes/02269/mobile-team-app",
        "type": "vn.communebus.mobile-team.visit-completed.v1", "time": "2025-11-02T16:00:00",
        "subject": "V-7", "commune": COMMUNE, "province": PROVINCE,
        "data": {"visit_id": "V-7", "team_id": "T-3", "village": "Thôn Nà Tàng", "started_at": "2025-11-02T08:00:00",
                 "completed_at": "2025-11-02T16:00:00", "households_visited": 41, "people_assisted": 63,
                 "dossiers_submitted": 12, "accounts_activated": 9},
    }


def storm_scheduled(event_id: str = "ann-1") -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": event_id, "source": "/communes/02269/loudspeakers",
        "type": "vn.communebus.announcement.scheduled.v1", "time": "2025-11-03T06:00:00",
        "subject": "A-1", "commune": COMMUNE, "province": PROVINCE,
        "data": {"announcement_id": "A-1", "category": "storm", "title": "Bão số 13", "target_clusters": ["C1", "C2"],
                 "languages": ["vi", "km"], "starts_at": "2025-11-03T06:30:00"},
    }


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def with_data(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**event, "data": {**event["data"], **changes}}


def without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


HDR = [("commune-code", b"02269")]
FIVE_MB = b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'

# (family, value, headers, expected reason, expected field): one record for each way input can be wrong
MALFORMED: list[tuple[Family, bytes | None, list[tuple[str, bytes]], Reason, str]] = [
    (Family.DOSSIER, b"\xff\xfe\x00garbage", [], Reason.NOT_UTF8, "(record)"),
    (Family.DOSSIER, b"{not json", [], Reason.NOT_JSON, "(record)"),
    (Family.DOSSIER, None, [], Reason.NOT_JSON, "(record)"),
    (Family.DOSSIER, b"[1, 2]", [], Reason.NOT_AN_OBJECT, "(record)"),
    (Family.DOSSIER, FIVE_MB, [], Reason.PAYLOAD_TOO_LARGE, "(record)"),
    (Family.DOSSIER, dumps(portal_dossier()), [*HDR, ("\ufffd\ufffd", b"v")], Reason.NOT_UTF8, "(headers)"),  # a name
    # that is not UTF-8, as Kafka's readers give it (ADR 0050)
    (Family.DOSSIER, dumps(portal_dossier()), [], Reason.MISSING_COMMUNE_HEADER, "commune-code"),
    (Family.DOSSIER, dumps(portal_dossier()), [("commune-code", b"99999")], Reason.UNKNOWN_COMMUNE, "commune-code"),
    (Family.DOSSIER, dumps(portal_dossier(status=11)), HDR, Reason.UNKNOWN_STATUS, "TrangThaiHoSo"),
    (Family.DOSSIER, dumps(portal_dossier(KenhThucHien="quầy")), HDR, Reason.INVALID_FIELD, "KenhThucHien"),
    (Family.DOSSIER, dumps(without(portal_dossier(), "MaTTHC")), HDR, Reason.MISSING_FIELD, "MaTTHC"),
    (Family.DOSSIER, dumps(portal_dossier(NgayTiepNhan="20251020080000")), HDR, Reason.IMPOSSIBLE_DATES,
     "NgayTiepNhan"),
    (Family.DOSSIER, dumps(portal_dossier(status=9, NgayKetThucXuLy="20251031000000")), HDR,
     Reason.IMPOSSIBLE_DATES, "NgayKetThucXuLy"),
    (Family.DOSSIER, dumps(portal_dossier(NgayNopHoSo="20251399000000")), HDR, Reason.INVALID_FIELD, "NgayNopHoSo"),
    (Family.DOSSIER, dumps({**canonical_dossier(), "commune": "99999"}), [], Reason.UNKNOWN_COMMUNE, "commune"),
    (Family.DOSSIER, dumps({**canonical_dossier(), "province": "01"}), [], Reason.PROVINCE_MISMATCH, "province"),
    (Family.DOSSIER, dumps({**canonical_dossier(), "province": "07"}), [], Reason.UNKNOWN_PROVINCE, "province"),
    (Family.DOSSIER, dumps(without(canonical_dossier(), "id")), [], Reason.MISSING_FIELD, "id"),
    (Family.DOSSIER, dumps(with_data(canonical_dossier(), status="đã tiếp nhận")), [], Reason.UNKNOWN_STATUS,
     "data.status"),
    (Family.DOSSIER, dumps(with_data(canonical_dossier(), status=9)), [], Reason.MISSING_FIELD, "data.ended_at"),
    (Family.DOSSIER, dumps(with_data(canonical_dossier(), paid_online="maybe")), [], Reason.INVALID_FIELD,
     "data.paid_online"),
    (Family.DOSSIER, dumps(with_data(canonical_dossier(), colour="red")), [], Reason.UNKNOWN_FIELD, "data.colour"),
    (Family.DOSSIER, dumps({**canonical_dossier(), "type": "vn.communebus.dossier.deleted.v9"}), [],
     Reason.UNKNOWN_EVENT_TYPE, "type"),
    (Family.DOSSIER, dumps(visit_completed()), [], Reason.WRONG_FAMILY, "type"),
    (Family.MOBILE_TEAM, dumps(with_data(visit_completed(), households_visited=-3)), [], Reason.INVALID_FIELD,
     "data.households_visited"),
    (Family.MOBILE_TEAM, dumps(with_data(visit_completed(), completed_at="2025-11-02T07:00:00")), [],
     Reason.IMPOSSIBLE_DATES, "data.completed_at"),
    (Family.ANNOUNCEMENT, dumps(with_data(storm_scheduled(), target_clusters=[])), [], Reason.MISSING_FIELD,
     "data.target_villages"),
    (Family.ANNOUNCEMENT, dumps(with_data(storm_scheduled(), category="fireworks")), [], Reason.INVALID_FIELD,
     "data.category"),
]
