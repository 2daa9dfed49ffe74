"""Independent checks of simulated records: what a valid record of each shape must satisfy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.events import EVENT_TYPES
from schemas.times import UtcDateTime
from services.simulator.render import COMMUNE_HEADER, RawRecord

PORTAL_REQUIRED = ("MaHoSo", "MaTTHC", "KenhThucHien", "TrangThaiHoSo", "NgayNopHoSo")
PORTAL_ORDER = (("NgayNopHoSo", "NgayTiepNhan"), ("NgayTiepNhan", "NgayKetThucXuLy"), ("NgayTiepNhan", "NgayHenTra"),
                ("NgayKetThucXuLy", "NgayTra"), ("NgayNopHoSo", "NgayTuChoi"))
FLAGS = ("DuocThanhToanTrucTuyen", "HoSoCoThanhPhanSoHoa", "TaiKhoanDuocXacThucVoiVNeID")
TIME = TypeAdapter(UtcDateTime)


def is_portal(record: RawRecord) -> bool:
    return any(k == COMMUNE_HEADER for k, _ in record.headers) or b'"MaHoSo"' in record.value


def parse(record: RawRecord) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(record.value)  # orjson rejects invalid UTF-8
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def event_problem(record: RawRecord) -> str | None:
    """Why a structured CloudEvents record fails its pydantic model, or None."""
    obj = parse(record)
    if obj is None or obj.get("type") not in EVENT_TYPES:
        return "not a JSON event of a known type"
    try:
        EVENT_TYPES[obj["type"]].model_validate_json(record.value)
    except ValidationError as exc:
        return exc.errors()[0]["type"]
    return None


def portal_dates(obj: dict[str, Any]) -> dict[str, datetime]:
    return {k: TIME.validate_python(v) for k, v in obj.items() if k.startswith("Ngay") and isinstance(v, str)}


def portal_problem(record: RawRecord, communes: set[str]) -> str | None:
    """Why a portal-shape record is unusable (header, required fields, codes, flags, date order), or None."""
    header = dict(record.headers).get(COMMUNE_HEADER)
    if header is None or header.decode() not in communes:
        return "commune-code header missing or not a commune of the province"
    obj = parse(record)
    if obj is None:
        return "not JSON"
    if missing := [f for f in PORTAL_REQUIRED if f not in obj]:
        return f"missing {missing}"
    if obj["TrangThaiHoSo"] not in range(1, 11) or obj["KenhThucHien"] not in range(1, 5):
        return "unknown status or channel code"
    if any(obj.get(f, 0) not in (0, 1) for f in FLAGS):
        return "flag is not 0/1"
    try:
        dates = portal_dates(obj)
    except ValidationError:
        return "unparseable date"
    for earlier, later in PORTAL_ORDER:
        if earlier in dates and later in dates and dates[later] < dates[earlier]:
            return f"{later} before {earlier}"
    return None
