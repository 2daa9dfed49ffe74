"""Planned steps rendered as the raw records commune systems send.

Two shapes: the canonical structured CloudEvents JSON (every family), and the
national portal's dossier sync payload (Vietnamese field names, Vietnam-time
dates, `commune-code` header) for communes whose software speaks it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from schemas.codes import PORTAL_CHANNEL_CODES, Channel
from schemas.dossier import DOSSIER_STATUS_CHANGED
from schemas.events import FAMILY_OF_TYPE, Family
from schemas.times import VIETNAM
from services.simulator.world import Commune, Step

Headers = list[tuple[str, bytes]]
STRUCTURED_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"
COMMUNE_HEADER = "commune-code"
DEFECT_HEADER = "simulator-defect"
"""Set only on deliberately bad records: the dead-letter reason intake should give (for end-to-end checks)."""
SOURCE_SYSTEMS = {Family.DOSSIER: "one-stop", Family.MOBILE_TEAM: "mobile-teams", Family.ANNOUNCEMENT: "loudspeakers"}
PORTAL_CHANNELS: dict[Channel, int] = {channel: code for code, channel in PORTAL_CHANNEL_CODES.items()}


class RawRecord(NamedTuple):
    """One record for a raw topic: `(family, key, value, headers)`."""

    family: Family
    key: bytes
    value: bytes
    headers: Headers


def dumps(body: dict[str, Any]) -> bytes:
    """orjson's bytes keep its growth buffer allocated; an exact copy makes a list of 100k records 5x smaller."""
    return bytes(memoryview(orjson.dumps(body)))


def uses_portal_shape(step: Step, commune: Commune) -> bool:
    return commune.portal_shape and step.type == DOSSIER_STATUS_CHANGED


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _offset(t: datetime) -> str:
    return t.astimezone(VIETNAM).strftime("%Y-%m-%dT%H:%M:%S+07:00")


def _portal_date(commune: Commune, t: datetime) -> str:
    return t.astimezone(VIETNAM).strftime("%Y%m%d%H%M%S" if commune.compact_dates else "%Y-%m-%dT%H:%M:%S")


def wire_values(value: Any, fmt: Any) -> Any:
    """JSON-ready copy: datetimes formatted by `fmt`, None members dropped."""
    if isinstance(value, datetime):
        return fmt(value)
    if isinstance(value, dict):
        return {k: wire_values(v, fmt) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [wire_values(v, fmt) for v in value]
    return value


def cloudevent(step: Step, commune: Commune, event_id: str) -> dict[str, Any]:
    family = FAMILY_OF_TYPE[step.type]
    fmt = _utc if commune.utc_times else _offset
    return {
        "specversion": "1.0", "id": event_id, "source": f"/communes/{commune.code}/{SOURCE_SYSTEMS[family]}",
        "type": step.type, "time": fmt(step.at), "subject": step.subject, "datacontenttype": "application/json",
        "commune": commune.code, "province": commune.province, "data": wire_values(step.data, fmt),
    }


def portal(step: Step, commune: Commune) -> dict[str, Any]:
    """The DVCQG dossier sync payload of one dossier snapshot."""
    d = step.data

    def date(name: str) -> str | None:
        return _portal_date(commune, d[name]) if d.get(name) is not None else None

    person = d.get("applicant") or {}
    body: dict[str, Any] = {
        "MaHoSo": d["dossier_code"], "MaTTHC": d["procedure_code"], "TenTTHC": d.get("procedure_name"),
        "MaLinhVuc": d.get("field_code"), "KenhThucHien": PORTAL_CHANNELS[Channel(d["channel"])],
        "TrangThaiHoSo": d["status"], "LoaiDoiTuong": 1,
        "NgayNopHoSo": date("submitted_at"), "NgayTiepNhan": date("received_at"), "NgayHenTra": date("due_at"),
        "NgayKetThucXuLy": date("ended_at"), "NgayTra": date("returned_at"), "NgayTuChoi": date("rejected_at"),
        "LyDoTuChoi": d.get("rejection_reason"), "DonViXuLy": d.get("handling_unit"),
        "DuocThanhToanTrucTuyen": int(d.get("paid_online", False)),
        "HoSoCoThanhPhanSoHoa": int(d.get("digitised", False)),
        "TaiKhoanDuocXacThucVoiVNeID": int(d.get("vneid_verified", False)),
        "TaiLieuNop": [{"TenTaiLieu": x["name"], "DuocSoHoa": int(x["digitised"]), "DuocTaiSuDung": int(x["reused"])}
                       for x in d.get("documents", [])],
        "DanhSachLePhi": [{"TenPhiLePhi": f["name"], "MucPhi": f["amount_vnd"]} for f in d.get("fees", [])],
        "ChuHoSo": person.get("name"), "SoGiayToChuHoSo": person.get("id_number"),
        "SoDienThoaiChuHoSo": person.get("phone"), "EmailChuHoSo": person.get("email"),
        "DiaChiChuHoSo": person.get("address"), "NgonNguUuTien": person.get("preferred_locale"),
        "QuaTrinhXuLy": [
            {"NguoiXuLy": d.get("assigned_officer_id") or f"cb{commune.code}.01",
             "ThoiDiemXuLy": _portal_date(commune, t),
             "TrangThai": status, "NgayBatDau": _portal_date(commune, t), "NgayKetThucTheoQuyDinh": date("due_at")}
            for t, status in step.history
        ],
    }
    if changes := d.get("due_date_changes"):
        body["NgayHenTraTruoc"] = _portal_date(commune, changes[-1]["previous_due_at"])
        body["NgayHenTraMoi"] = _portal_date(commune, changes[-1]["new_due_at"])
    return {k: v for k, v in body.items() if v is not None}


def record(step: Step, commune: Commune, event_id: str) -> RawRecord:
    """The valid raw record of a step, in the shape its commune sends."""
    key = commune.code.encode()
    if uses_portal_shape(step, commune):
        return RawRecord(Family.DOSSIER, key, dumps(portal(step, commune)), [(COMMUNE_HEADER, key)])
    body = cloudevent(step, commune, event_id)
    return RawRecord(FAMILY_OF_TYPE[step.type], key, dumps(body), [("content-type", STRUCTURED_CONTENT_TYPE)])
