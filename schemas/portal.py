"""The national portal's dossier sync shape: its field names (DVCQG), and its JSON Schema derived from `DossierData`.

Intake maps a portal payload field by field onto the canonical dossier data (`services.intake.portal`) and
validates that: every bound a portal field must keep is the bound of the canonical field it becomes. The schema is
built here from those same two things, the names below and `DossierData`'s own JSON Schema, so it states what
intake enforces and cannot drift from it. The hand-written schema it replaces said none of it (no length, no
pattern, no maxItems, no maximum, `MucPhi` optional, any integer for a flag, any string for `source`): 13 records and
a header of the contract audit (2026-12) were valid under it, and each a dead letter.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel

from schemas.codes import PORTAL_CHANNEL_CODES, DossierStatus
from schemas.dossier import DATE_ORDER, REQUIRED_DATES, Applicant, DossierData, DueDateChange, Fee, SubmittedDocument
from schemas.envelope import Event
from schemas.limits import MAX_DEPTH, MAX_ITEMS, SAFETY_LIMIT

COMMUNE_HEADER: Final = "commune-code"
SOURCE_HEADER: Final = "source"

FIELD_NAMES: Final[dict[str, str]] = {
    "dossier_code": "MaHoSo",
    "procedure_code": "MaTTHC",
    "procedure_name": "TenTTHC",
    "field_code": "MaLinhVuc",
    "channel": "KenhThucHien",
    "status": "TrangThaiHoSo",
    "submitted_at": "NgayNopHoSo",
    "received_at": "NgayTiepNhan",
    "due_at": "NgayHenTra",
    "ended_at": "NgayKetThucXuLy",
    "returned_at": "NgayTra",
    "rejected_at": "NgayTuChoi",
    "rejection_reason": "LyDoTuChoi",
    "handling_unit": "DonViXuLy",
    "paid_online": "DuocThanhToanTrucTuyen",
    "digitised": "HoSoCoThanhPhanSoHoa",
    "vneid_verified": "TaiKhoanDuocXacThucVoiVNeID",
    "documents": "TaiLieuNop",
    "fees": "DanhSachLePhi",
    "due_date_changes": "NgayHenTraMoi",
}
"""Canonical field -> portal field, for the mapping and to name portal fields in error messages."""
APPLICANT_FIELDS: Final[dict[str, str]] = {
    "name": "ChuHoSo",
    "id_number": "SoGiayToChuHoSo",
    "phone": "SoDienThoaiChuHoSo",
    "email": "EmailChuHoSo",
    "address": "DiaChiChuHoSo",
    "preferred_locale": "NgonNguUuTien",
}
DOCUMENT_FIELDS: Final = {"name": "TenTaiLieu", "digitised": "DuocSoHoa", "reused": "DuocTaiSuDung"}
FEE_FIELDS: Final = {"name": "TenPhiLePhi", "amount_vnd": "MucPhi"}
DUE_DATE_MOVE: Final = {"previous_due_at": "NgayHenTraTruoc", "new_due_at": "NgayHenTraMoi"}
"""A move of the due date, at the top level and in each entry of `FURTHER_REQUESTS`."""
FURTHER_REQUESTS: Final = "DanhSachHoSoBoSung"
"""The requests for more documents, where the portal's sync puts the due date's moves."""
PROGRESS: Final = "QuaTrinhXuLy"
PROGRESS_TIME: Final = "ThoiDiemXuLy"
EVENT_TIMES: Final = ("submitted_at", "received_at", "ended_at", "returned_at", "rejected_at")
"""The dates that time the event a payload becomes (the latest of them, or of its steps'): not the due dates."""
PLAIN_FIELDS: Final = {k: v for k, v in FIELD_NAMES.items() if k not in ("documents", "fees", "due_date_changes")}
"""The fields copied as they are (the lists and the due date's moves have shapes of their own)."""

_MONTH, _DAY = r"(0[1-9]|1[0-2])", r"(0[1-9]|[12][0-9]|3[01])"
_HOUR, _MINUTE = r"([01][0-9]|2[0-3])", r"[0-5][0-9]"
_COMPACT = rf"[0-9]{{4}}{_MONTH}{_DAY}{_HOUR}{_MINUTE}{_MINUTE}"
_ISO = (rf"[0-9]{{4}}-{_MONTH}-{_DAY}([Tt ]{_HOUR}:{_MINUTE}(:{_MINUTE}([.,][0-9]{{1,6}})?)?"
        rf"([Zz]|[+-]{_HOUR}:?{_MINUTE})?)?")
DATE_PATTERN: Final = f"^({_COMPACT}|{_ISO})$"
"""yyyyMMddHHmmss, or an ISO 8601 date with or without a time of day and an offset."""
DATE: Final = {
    "type": ["string", "null"], "pattern": DATE_PATTERN,
    "description": "yyyyMMddHHmmss or ISO 8601 (YYYY-MM-DD, then optionally THH:MM[:SS[.ffffff]] and an offset); "
                   "without an offset Vietnam time. A real date and time of the calendar, 1975 to 2100 (UTC)"}
FLAG: Final = {"type": ["boolean", "integer", "null"], "enum": [False, True, 0, 1, None]}
"""A yes/no field: a JSON boolean, or 0/1 as the portal sends it."""
_KEYWORDS = ("type", "enum", "minLength", "maxLength", "pattern", "minimum", "maximum", "minItems", "maxItems",
             "format", SAFETY_LIMIT)
_NOT_BLANK = {"pattern": r"\S", "description": "Not blank: spaces around the text are trimmed before its length counts"}


def _field(model: type[BaseModel], name: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    """The portal form of `model.name`'s JSON Schema `schema` (a null or empty value is taken as absent)."""
    defs = schema.get("$defs", {})
    node = schema["properties"][name]
    branches = [defs[b["$ref"].rsplit("/", 1)[-1]] if "$ref" in b else b for b in node.get("anyOf", [node])]
    [inner] = [b for b in branches if b.get("type") != "null"]  # an optional field: its value's schema, or null
    if inner.get("format") == "date-time":
        return DATE
    if inner.get("type") == "boolean":
        return FLAG
    out = {k: v for k in _KEYWORDS if (v := inner.get(k, node.get(k))) is not None}
    out["description"] = f"`{model.__name__}.{name}`"
    if inner.get("type") == "string" and inner.get("minLength"):
        out["allOf"] = [_NOT_BLANK]
    if not required:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _object(model: type[BaseModel], names: dict[str, str]) -> dict[str, Any]:
    """`model`'s fields under their portal `names`, each bounded as the model bounds it; unknown members ignored."""
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", ()))
    return {"type": "object",
            **({"required": [names[n] for n in names if n in required]} if required & names.keys() else {}),
            "properties": {portal: _field(model, ours, schema, ours in required) for ours, portal in names.items()}}


def _list(model: type[BaseModel], field: str, item: dict[str, Any], max_items: int | None = None) -> dict[str, Any]:
    limit = max_items or DossierData.model_json_schema(mode="validation")["properties"][field]["maxItems"]
    return {"type": ["array", "null"], "maxItems": limit, SAFETY_LIMIT: True, "items": item,
            "description": f"`{model.__name__}.{field}`"}


def _beyond() -> str:
    """What a portal payload must also keep that no JSON Schema keyword says: dates by status, dates in order."""
    needed = {FIELD_NAMES[name]: [int(s) for s in DossierStatus if name in REQUIRED_DATES[s]]
              for name in dict.fromkeys(n for names in REQUIRED_DATES.values() for n in names)}
    return ("the dates a status needs (" + "; ".join(f"{portal}: status {', '.join(map(str, statuses))}"
                                                    for portal, statuses in needed.items())
            + f"), a date to time the event by ({', '.join(FIELD_NAMES[n] for n in EVENT_TIMES)} or a step's "
            + f"{PROGRESS_TIME}), and dates in order ("
            + ", ".join(f"{FIELD_NAMES[b]} not before {FIELD_NAMES[a]}" for a, b in DATE_ORDER) + ")")


def payload_schema() -> dict[str, Any]:
    """The JSON Schema of a portal dossier payload: each field as the canonical field it becomes bounds it."""
    dossier = _object(DossierData, PLAIN_FIELDS)
    channel = dossier["properties"][FIELD_NAMES["channel"]]
    channel.update({"type": "integer", "enum": sorted(PORTAL_CHANNEL_CODES),
                    "description": ", ".join(f"{code} {c.value}" for code, c in sorted(PORTAL_CHANNEL_CODES.items()))})
    move = _object(DueDateChange, DUE_DATE_MOVE)
    move.pop("required")  # a move is read only when both dates are there; half of one is passed over
    applicant = _object(Applicant, APPLICANT_FIELDS)["properties"]
    personal = [portal for ours, portal in APPLICANT_FIELDS.items() if ours != "preferred_locale"]
    for portal in personal:
        applicant[portal]["description"] += ", personal data"
    beyond = _beyond()
    return {
        "type": "object",
        "description": "The national portal's dossier sync payload (DVCQG field names), derived from the canonical "
        "dossier data each field becomes (schemas/portal.py). A null or empty field is taken as absent; unknown "
        f"fields are ignored. Anywhere in the record an array holds at most {MAX_ITEMS} items and JSON nests at most "
        f"{MAX_DEPTH} levels; text lengths count characters in Unicode NFC. Beyond this schema: {beyond}. "
        "Personal data: " + ", ".join(personal),
        "required": dossier["required"],
        "not": {"required": ["specversion"], "description": "a record with `specversion` is read as a CloudEvent"},
        "properties": {
            **dossier["properties"],
            FIELD_NAMES["documents"]: _list(DossierData, "documents", _object(SubmittedDocument, DOCUMENT_FIELDS)),
            FIELD_NAMES["fees"]: _list(DossierData, "fees", _object(Fee, FEE_FIELDS)),
            **move["properties"],
            FURTHER_REQUESTS: _list(DossierData, "due_date_changes", move, MAX_ITEMS - 1)
            | {"description": "Requests for more documents: each move of the due date in one is a `due_date_changes` "
                              "entry (at most one fewer than those: the top-level move is one more)"},
            **applicant,
            PROGRESS: {"type": ["array", "null"], "maxItems": MAX_ITEMS, SAFETY_LIMIT: True, "items": {
                "type": ["object", "null"], "properties": {PROGRESS_TIME: {
                    "description": "When the step was taken, a date as above: the latest step times the event if it "
                                   "is later than the dossier's dates; a time that is not valid is passed over"}}},
                "description": "Processing steps"},
        },
    }


def source_header() -> dict[str, Any]:
    """The `source` record header: the event's `source` (`Event.source`'s bounds), the commune's portal sync when
    absent."""
    source = Event.model_json_schema(mode="validation")["properties"]["source"]
    return {k: v for k in (*_KEYWORDS, "description") if (v := source.get(k)) is not None} | {
        "description": f"{source['description']}. Absent: the commune's portal sync, /communes/<commune>/portal-sync"}
