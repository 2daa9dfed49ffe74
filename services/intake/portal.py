"""The national portal's dossier sync shape (DVCQG field names, `schemas.portal`) mapped to the canonical dossier event.

Integrators already produce this shape; the commune comes from the record's
`commune-code` header. Unknown portal fields are ignored: portal payloads carry
many fields we do not use.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from schemas import portal as shape
from schemas.codes import PORTAL_CHANNEL_CODES
from schemas.dossier import DOSSIER_STATUS_CHANGED, DossierData
from schemas.limits import EARLIEST, LATEST
from schemas.times import is_compact, parse_utc

COMMUNE_HEADER: Final = shape.COMMUNE_HEADER
SOURCE_HEADER: Final = shape.SOURCE_HEADER
_ID_NAMESPACE = uuid.UUID("5b0f6a52-3c1e-4d7e-9f51-2f2f8a0d4c11")
_ID_PREFIX = _ID_NAMESPACE.bytes
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_V5 = (5 << 76) | (0x8000 << 48)

def commune_code(header: bytes | str | None) -> str:
    """The commune code a `commune-code` header (or a CLI's `--commune`) names, as intake reads it: its text (bytes
    not UTF-8 replaced, a null value empty) stripped and zero-padded to five digits (`2269` is 02269); on the
    official list or not is the caller's to check."""
    text = header if isinstance(header, str) else header.decode("utf-8", "replace") if header is not None else ""
    return text.strip().zfill(5)


def is_portal_shape(obj: dict[str, Any]) -> bool:
    return shape.FIELD_NAMES["dossier_code"] in obj and "specversion" not in obj


def sync_source(commune: str) -> str:
    """The source of a portal-shape record without a `source` header: the commune's portal sync."""
    return f"/communes/{commune}/portal-sync"


def _pick(obj: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {ours: value for ours, theirs in names.items() if (value := obj.get(theirs)) is not None and value != ""}


def _channel(code: Any) -> Any:
    if isinstance(code, str) and (digits := code.strip()).isascii() and digits.isdigit() and len(digits) <= 9:
        code = int(digits)
    return PORTAL_CHANNEL_CODES.get(code, code) if isinstance(code, int) else code


def to_canonical_data(obj: dict[str, Any]) -> dict[str, Any]:
    """The `data` of a canonical dossier event, still unvalidated."""
    data = _pick(obj, shape.PLAIN_FIELDS)
    if "channel" in data:
        data["channel"] = _channel(data["channel"])
    if isinstance(docs := obj.get(shape.FIELD_NAMES["documents"]), list):
        data["documents"] = [_pick(d, shape.DOCUMENT_FIELDS) if isinstance(d, dict) else d for d in docs]
    if isinstance(fees := obj.get(shape.FIELD_NAMES["fees"]), list):
        data["fees"] = [_pick(f, shape.FEE_FIELDS) if isinstance(f, dict) else f for f in fees]
    if changes := _due_date_changes(obj):
        data["due_date_changes"] = changes
    applicant = _pick(obj, shape.APPLICANT_FIELDS)
    if applicant:
        data["applicant"] = applicant
    return data


_PREVIOUS, _NEW = shape.DUE_DATE_MOVE["previous_due_at"], shape.DUE_DATE_MOVE["new_due_at"]


def _due_date_changes(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Each move of the due date: at the top level, and in each request for more documents (`DanhSachHoSoBoSung[]`,
    where the portal's sync puts them), in that order, the same move once."""
    return [{"previous_due_at": previous, "new_due_at": new} for _, previous, new in _moves(obj)]


def _moves(obj: dict[str, Any]) -> list[tuple[int, Any, Any]]:
    """The due date's moves as (where the portal put it, previous, new): 0 for the top level, i + 1 for
    `DanhSachHoSoBoSung[i]`; the order and the de-duplication of `due_date_changes`. Per record: where is an int,
    named only for a refusal (`_move_field`)."""
    moves: list[tuple[int, Any, Any]] = []
    seen: set[tuple[str, str]] = set()
    extra = obj.get(shape.FURTHER_REQUESTS)
    for where, entry in enumerate((obj, *extra) if isinstance(extra, list) else (obj,)):
        if not isinstance(entry, dict):
            continue
        if (previous := entry.get(_PREVIOUS)) and (new := entry.get(_NEW)):
            if isinstance(previous, str) and isinstance(new, str):  # anything else is left to validation to name
                if (previous, new) in seen:
                    continue
                seen.add((previous, new))
            moves.append((where, previous, new))
    return moves


def _move_field(obj: dict[str, Any], index: int, rest: list[str | int]) -> str | None:
    """The portal's name of a canonical `due_date_changes[index]...` location: where that move was sent
    (`DanhSachHoSoBoSung[2].NgayHenTraMoi`, or `NgayHenTraTruoc` at the top level), not the index among all moves."""
    moves = _moves(obj)
    if not 0 <= index < len(moves):
        return None
    entry = moves[index][0]
    where = f"{shape.FURTHER_REQUESTS}[{entry - 1}]" if entry else ""
    if rest and isinstance(rest[0], str) and rest[0] in shape.DUE_DATE_MOVE:
        return f"{where}.{shape.DUE_DATE_MOVE[rest[0]]}" if where else shape.DUE_DATE_MOVE[rest[0]]
    return where or _NEW


_ITEM_FIELDS = {**shape.FEE_FIELDS, **shape.DOCUMENT_FIELDS}
"""A list item's fields by their portal names (a document's `name` is `TenTaiLieu`, as it was named first)."""


def portal_field(loc: tuple[str | int, ...], obj: dict[str, Any] | None = None) -> str:
    """Name a canonical error location by the portal field the integrator sent (`obj`: the record, which says where
    each move of the due date was sent)."""
    parts = [p for p in loc if p != "data"]
    if not parts:
        return "data"
    head = parts[0]
    if head == "applicant" and len(parts) > 1 and isinstance(parts[1], str):
        return shape.APPLICANT_FIELDS.get(parts[1], parts[1])
    if (head == "due_date_changes" and obj is not None and len(parts) > 1 and isinstance(parts[1], int)
            and (named := _move_field(obj, parts[1], parts[2:])) is not None):
        return named
    name = shape.FIELD_NAMES.get(head, head) if isinstance(head, str) else str(head)
    rest = "".join(f"[{p}]" if isinstance(p, int) else f".{_ITEM_FIELDS.get(p, p)}" for p in parts[1:])
    return f"{name}{rest}"


def event_id(commune: str, obj: dict[str, Any]) -> str:
    """Deterministic: the same portal payload re-sent gets the same id, so it is published once.

    RFC 4122 name-based UUID v5 of `commune|payload as sorted JSON` (what `uuid.uuid5` computes, without
    its str -> bytes round trip of the whole payload).
    """
    payload = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha1(_ID_PREFIX + commune.encode() + b"|" + payload).digest()
    h = (int.from_bytes(digest[:16]) & _UUID_CLEAR) | _UUID_V5  # RFC 4122 variant, version 5
    return (f"{h >> 96:08x}-{(h >> 80) & 0xFFFF:04x}-{(h >> 64) & 0xFFFF:04x}-{(h >> 48) & 0xFFFF:04x}-"
            f"{h & 0xFFFFFFFFFFFF:012x}")


def _progress_times(progress: Any) -> list[datetime]:
    """The times of the progress steps that are valid times within the accepted range (1975-2100): a malformed or
    out-of-range step only loses its own time, never the dossier (time audit: a step mistyped as 2101 made the
    event's time out of range, and the whole status update a dead letter)."""
    values = [step[shape.PROGRESS_TIME] for step in (progress if isinstance(progress, list) else ())
              if isinstance(step, dict) and step.get(shape.PROGRESS_TIME)]
    if values and all(map(is_compact, values)):
        try:  # yyyyMMddHHmmss strings sort as their times do: parse only the latest
            latest = parse_utc(max(values))
            if EARLIEST <= latest <= LATEST:
                return [latest]
        except PydanticCustomError:
            pass  # the latest is no valid time, or out of range: take each that is
    times = []
    for value in values:
        try:
            time = parse_utc(value)
        except (ValidationError, PydanticCustomError):
            continue
        if EARLIEST <= time <= LATEST:
            times.append(time)
    return times


def event_time(data: DossierData, progress: Any) -> datetime | None:
    """When the state this payload describes came about: its latest non-due date or progress step."""
    times: list[datetime] = [t for name in shape.EVENT_TIMES if (t := getattr(data, name))]
    times += [c.changed_at for c in data.due_date_changes if c.changed_at]
    times += _progress_times(progress)
    return max(times) if times else None


def envelope(commune: str, source: str, obj: dict[str, Any], data: DossierData) -> dict[str, Any]:
    """The CloudEvents attributes of the event carrying `data` (province aside)."""
    return {
        "id": event_id(commune, obj),
        "source": source,
        "type": DOSSIER_STATUS_CHANGED,
        "time": event_time(data, obj.get(shape.PROGRESS)),
        "subject": data.dossier_code,
        "commune": commune,
    }
