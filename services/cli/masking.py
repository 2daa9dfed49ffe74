"""What `tail` shows of applicants' personal data by default: a hint, as notify's log lines give one.

Raw topics hold applicants' names, CCCD numbers, phones, e-mails and addresses in clear
(sealing happens in intake, ADR 0015), and so may canonical topics and dead letters where
sealing is off. An operator following a topic needs the record's shape (which field is there,
whether a phone looks like one), rarely the person: `masked` keeps the first, hides the second.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from schemas.personal import MAX_TOKEN_LENGTH, PERSONAL_FIELDS, TOKEN_PATTERN
from schemas.times import is_compact
from services.intake.portal import APPLICANT_FIELDS, FIELD_NAMES
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


MIN_TOKEN_LENGTH = -(-(12 + 16) * 4 // 3)
"""The shortest sealed token: an empty field's (nonce and tag alone), 38 base64url characters."""
_TOKEN = re.compile(TOKEN_PATTERN.strip("^$"))
PERSONAL_NUMBER = re.compile(r"\d{9,}")
"""Nine digits or more in a row: an old CMND (9), a phone (10, or 11 written from 84), a CCCD (12). Masked in every
string, member name and number of a value, whatever its field (a note, an id, a number that lost its leading 0)."""
PORTAL_TIMES = frozenset(FIELD_NAMES[f] for f in ("submitted_at", "received_at", "due_at", "ended_at", "returned_at",
                                                   "rejected_at"))
"""The portal's time fields (yyyyMMddHHmmss, 14 digits): a valid time there is shown as it is."""


def is_sealed_token(value: Any) -> bool:
    """`value` has a sealed field's form (`schemas.personal.SealedApplicant`): base64url of nonce, ciphertext and tag.
    No clear name, e-mail, address (spaces, `@`, diacritics) or number (all digits, 12 at most) has it."""
    return (isinstance(value, str) and MIN_TOKEN_LENGTH <= len(value) <= MAX_TOKEN_LENGTH and len(value) % 4 != 1
            and _TOKEN.fullmatch(value) is not None and not value.isdigit())


def portal_time(value: str) -> bool:
    """A valid time of the portal's yyyyMMddHHmmss form, from 1975 on."""
    if not (is_compact(value) and value.isascii()):
        return False
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").year >= 1975
    except ValueError:
        return False


def personal_numbers_masked(text: str) -> str:
    """`text` with each run of nine digits or more (`PERSONAL_NUMBER`) masked as a phone is (`09******78`)."""
    return PERSONAL_NUMBER.sub(lambda m: mask_phone(m.group()), text)


def _mask(field: str, value: Any) -> Any:
    if value is None or value == "" or is_sealed_token(value):  # a sealed field holds nothing to mask
        return value
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return personal_numbers_masked(_MASKS[field](str(value)))
    return HIDDEN  # an object or a list where a field of text goes: nothing of it is shown


def _leaf(name: str | None, value: Any) -> Any:
    if isinstance(value, str):
        return value if name in PORTAL_TIMES and portal_time(value) else personal_numbers_masked(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and PERSONAL_NUMBER.search(str(value)):
        return personal_numbers_masked(str(value))
    return value


def _group(value: Any, depth: int) -> Any:
    """An applicant group (or a list of them, at any nesting) with each personal field masked unless sealed: whether it
    is sealed is read from each value, not from a `key_id` beside it."""
    if depth >= DEEPEST:
        return HIDDEN
    if isinstance(value, list):
        return [_group(item, depth + 1) for item in value]
    if not isinstance(value, dict):
        return masked(value, depth)
    return _members(value, depth, lambda f, v: _mask(f, v) if f in _MASKS else masked(v, depth + 1, f))


def _members(obj: dict[str, Any], depth: int, member: Callable[[str, Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in obj.items():
        shown = personal_numbers_masked(name)
        while shown in out:  # two names masked alike: both kept
            shown += "'"
        out[shown] = member(name, value)
    return out


def masked(obj: Any, depth: int = 0, name: str | None = None) -> Any:
    """`obj` (a parsed JSON value) with every applicant's personal field masked (in an applicant group or a list of
    them, unless the field holds a sealed token, and under the portal shape's names) and every run of nine digits or
    more masked wherever it is (`PERSONAL_NUMBER`; a portal time aside), at any depth up to `DEEPEST` (an object or
    list below it is `HIDDEN` whole). `name` is the member `obj` is the value of."""
    if not isinstance(obj, list | dict):
        return _leaf(name, obj)
    if depth >= DEEPEST:
        return HIDDEN
    if isinstance(obj, list):
        return [masked(item, depth + 1) for item in obj]

    def member(name: str, value: Any) -> Any:
        if name in PORTAL_FIELDS:
            return _mask(PORTAL_FIELDS[name], value)
        if name == APPLICANT_GROUP:
            return _group(value, depth + 1)
        return masked(value, depth + 1, name)

    return _members(obj, depth, member)
