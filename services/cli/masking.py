"""What `tail` shows of applicants' personal data by default: a hint, as notify's log lines give one.

Raw topics hold applicants' names, CCCD numbers, phones, e-mails and addresses in clear
(sealing happens in intake, ADR 0015), and so may canonical topics and dead letters where
sealing is off. An operator following a topic needs the record's shape (which field is there,
whether a phone looks like one), rarely the person: `masked` keeps the first, hides the second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.personal import PERSONAL_FIELDS
from services.intake.portal import APPLICANT_FIELDS
from services.notify.masking import mask_email, mask_name, mask_phone

_MASKS: dict[str, Callable[[str], str]] = {
    "name": mask_name, "id_number": mask_phone, "phone": mask_phone, "email": mask_email,
    "zalo_user_id": mask_phone, "address": lambda _: "***",
}
"""Per personal field of the applicant group (`schemas.personal.PERSONAL_FIELDS`): what is left of it."""
PORTAL_FIELDS = {portal: ours for ours, portal in APPLICANT_FIELDS.items() if ours in PERSONAL_FIELDS}
"""The portal shape's names of the same fields (`ChuHoSo`, `SoGiayToChuHoSo`, ...): masked wherever they appear."""
APPLICANT_GROUP = "applicant"
"""The member holding the applicant group (`data.applicant` structured, `applicant` in binary mode)."""
DEEPEST = 100
"""Levels of nesting looked into (intake refuses records past `schemas.limits.MAX_DEPTH`, 32, but a raw topic holds
what was sent); anything deeper is not shown. Within Python's recursion limit and orjson's serialising limit."""
HIDDEN = "***"


def _mask(field: str, value: Any) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return _MASKS[field](str(value))
    return HIDDEN  # an object or a list where a field of text goes: nothing of it is shown


def masked(obj: Any, depth: int = 0) -> Any:
    """`obj` (a parsed JSON value) with every applicant's personal field masked: in an applicant group in clear form
    (a sealed one, naming its `key_id`, holds tokens only) and under the portal shape's names, at any depth up to
    `DEEPEST` (an object or list below it is `HIDDEN` whole)."""
    if not isinstance(obj, list | dict):
        return obj
    if depth >= DEEPEST:
        return HIDDEN
    if isinstance(obj, list):
        return [masked(item, depth + 1) for item in obj]
    out: dict[str, Any] = {}
    for name, value in obj.items():
        if name in PORTAL_FIELDS:
            out[name] = _mask(PORTAL_FIELDS[name], value)
        elif name == APPLICANT_GROUP and isinstance(value, dict) and "key_id" not in value:
            out[name] = {f: _mask(f, v) if f in _MASKS else masked(v, depth + 2) for f, v in value.items()}
        else:
            out[name] = masked(value, depth + 1)
    return out
