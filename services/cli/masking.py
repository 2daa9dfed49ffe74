"""What `tail` shows of applicants' personal data by default: a hint, as notify's log lines give one.

Raw topics hold applicants' names, CCCD numbers, phones, e-mails and addresses in clear
(sealing happens in intake, ADR 0015), and so may canonical topics and dead letters where
sealing is off. An operator following a topic needs the record's shape (which field is there,
whether a phone looks like one), rarely the person: `masked` keeps the first, hides the second.
Producers also key records by a CCCD or phone and put personal data in headers of their own
(`x-applicant-phone`, a `ce_subject` holding a citizen id; ADR 0026): `shown_key` and
`shown_header` show a key or header value only when it has a closed shape that identifies
nobody, the rule intake keeps dead letters' clear headers by, and otherwise only its length.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas import limits
from schemas.deadletter import Header, Reason
from schemas.lookup import lookup_id, lookup_name, lookup_trace_id, personal_numbers
from schemas.personal import (
    ERASED_KEY,
    ERASED_MARK,
    MAX_TOKEN_LENGTH,
    PERSONAL_FIELDS,
    SEALED_KEY_HEADER,
    SEALED_LAYOUT_HEADER,
    SEALED_SUBJECT_HEADER,
    TOKEN_PATTERN,
)
from schemas.portal import APPLICANT_FIELDS, FIELD_NAMES
from schemas.times import is_compact
from schemas.topics import TOPICS
from services.cli.plain import decoded
from services.notify.masking import mask_email, mask_name, mask_phone
from services.privacy.deadletters import CLEAR_HEADERS, clear_headers, dead_letter_key

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
PERSONAL_NUMBER = re.compile(r"\d(?:[ .\-]?\d){8,}")
"""Nine digits or more, in a row or grouped by single spaces, dots or dashes (`0912 345 678`, `+84 912.345.678`,
`001-099-012-345`): an old CMND (9), a phone (10, or 11 written from 84), a CCCD (12). Masked in every string,
member name and number of a value, whatever its field (a note, an id, a number that lost its leading 0)."""
EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
"""An e-mail address, in any field: masked as notify's log lines mask one."""
PORTAL_TIMES = frozenset(FIELD_NAMES[f] for f in ("submitted_at", "received_at", "due_at", "ended_at", "returned_at",
                                                   "rejected_at"))
"""The portal's time fields (yyyyMMddHHmmss, 14 digits): a valid time there is shown as it is."""
NAMING_FIELDS = frozenset({"id", "subject", "source", FIELD_NAMES["dossier_code"]})
"""A record's own members that name its event or dossier (and `data.dossier_code`): masked as `trace` masks such a
name (`names_masked`), so a dossier code's digit groups (`TL-251101-0001`) are shown, and `tail` shows the code
`trace` is then asked for. Only there: deeper (`data.applicant.id`) a grouped number is masked by the stricter rule."""


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
    """`text` with each run of nine digits or more (`PERSONAL_NUMBER`) masked as a phone is (`09******78`), and each
    e-mail address (`EMAIL`) as notify masks one."""
    return PERSONAL_NUMBER.sub(lambda m: mask_phone(m.group()), EMAIL.sub(lambda m: mask_email(m.group()), text))


def names_masked(text: str) -> str:
    """A name a producer chose (a source, an event id, a subject) with each of its `personal_numbers` and e-mail
    addresses masked, full-width digits read as digits: what `trace` and `dlq list` show of one. Unlike a value's
    free text (`personal_numbers_masked`), other digit groups stay, so dossier codes and dates read as they are."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = EMAIL.sub(lambda m: mask_email(m.group()), text)
    for start, end in reversed(personal_numbers(text)):
        text = text[:start] + mask_phone(text[start:end]) + text[end:]
    return text


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

    def member(field: str, value: Any) -> Any:
        if isinstance(value, str) and ((depth == 0 and field in NAMING_FIELDS)
                                       or (depth == 1 and name == "data" and field == "dossier_code")):
            return names_masked(value)
        if field in PORTAL_FIELDS:
            return _mask(PORTAL_FIELDS[field], value)
        if field == APPLICANT_GROUP:
            return _group(value, depth + 1)
        if field == PAYLOAD and isinstance(value, str) and value.startswith("{"):
            return _payload(value)
        return masked(value, depth + 1, field)

    return _members(obj, depth, member)


PAYLOAD = "payload"
"""A notification request's webhook body: an event as JSON text, its applicant in clear where sealing is off (privacy
audit: only the numbers in the text were masked, the applicant's name and address shown)."""


def _payload(text: str) -> Any:
    """A webhook's event text masked as an event on its own topic is (its names too), as text; the text's numbers
    masked if it is no JSON."""
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _leaf(PAYLOAD, text)
    return orjson.dumps(masked(event)).decode()


# --- keys and headers --------------------------------------------------------------------------------------------


def withheld(raw: bytes | str, what: str = "masked") -> str:
    """What is shown of a key, header value or name that may identify someone: its length."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    return f"<{what}, {size} bytes>"


def _shape(pattern: str) -> Callable[[bytes], bool]:
    compiled = re.compile(pattern.encode())
    return lambda value: compiled.fullmatch(value) is not None


_OFFSET = r"(?:0|[1-9][0-9]{0,18})"
_PARTITION = r"(?:0|[1-9][0-9]{0,5})"
_TOPIC = r"(?:[A-Za-z_][A-Za-z0-9_-]{0,63}\.)?(?:" + "|".join(re.escape(t.name) for t in TOPICS) + ")"
"""One of our topics, in a namespace or not (tests give each run its own: `schemas.topics.namespaced`)."""
_SUBJECT = r"(?:[ad]-[A-Za-z0-9_-]{43}|r-[A-Za-z0-9_-]{22}|dlq:[0-9]{4}-[0-9]{2}-[0-9]{2})"
"""The subjects intake and the keyring make: a peppered HMAC of an identifier (`a-`) or of a dossier (`d-`), a random
id (`r-`, before 2026-12-03), a day (`dlq:`)."""
_KEY_ID = r"[A-Za-z0-9_-]{22}"
"""`crypto.new_key_id`: 128 random bits."""
_SEALED_UNDER = rf"{_KEY_ID}|{ERASED_KEY}"
"""A dead letter's key: a data key's id, or none (sealed already erased, ADR 0042)."""
_FIELD_PATH = re.compile(r"\(record\)|ce_\*|(?:<member>|[A-Za-z_][A-Za-z0-9_-]{0,63})"
                         r"(?:\.(?:<member>|[A-Za-z_][A-Za-z0-9_-]{0,63})|\[[0-9]{1,9}\])*")


def _field_path(value: bytes) -> bool:
    """A rejection's field as intake names it: a path of plain member names (`limits.shown_key`: no five digits in a
    row; any other name is `<member>`) and list indexes, `(record)` or `ce_*`."""
    if not value.isascii() or len(value) > 256 or not _FIELD_PATH.fullmatch(text := value.decode("ascii")):
        return False
    return all(limits.shown_key(part) == part for part in re.findall(r"[A-Za-z_][A-Za-z0-9_-]*", text))


def _lookup(check: Callable[[object], str | None]) -> Callable[[bytes], bool]:
    """A `dlq.lookup.*` value in the shape intake writes it (`schemas.lookup`), as it is (nothing stripped)."""
    return lambda value: value.isascii() and check(text := value.decode("ascii")) == text


_REASONS = frozenset(r.value.encode() for r in Reason)
DLQ_HEADERS: dict[str, Callable[[bytes], bool]] = {
    Header.REASON: _REASONS.__contains__,
    Header.FIELD: _field_path,
    Header.SOURCE_TOPIC: _shape(_TOPIC),
    Header.SOURCE_PARTITION: _shape(_PARTITION),
    Header.SOURCE_OFFSET: _shape(_OFFSET),
    Header.REJECTED_AT: CLEAR_HEADERS["ce_time"],
    Header.REPLAYED: _shape(f"{_PARTITION}:{_OFFSET}"),
    Header.LOOKUP_ID: _lookup(lookup_id),
    Header.LOOKUP_SUBJECT: _lookup(lookup_name),
    Header.LOOKUP_DOSSIER: _lookup(lookup_name),
    Header.LOOKUP_TRACE: _lookup(lookup_trace_id),
    SEALED_SUBJECT_HEADER: _shape(_SUBJECT),
    SEALED_KEY_HEADER: _shape(_SEALED_UNDER),
    SEALED_LAYOUT_HEADER: _shape(r"record\.v[0-9]{1,3}"),
}
"""The `dlq.*` headers intake, notify and `dlq replay` write, each shown when its value has the shape they write (a
raw record may carry a header of the same name holding anything). Not `dlq.message`: free text, which quotes the
validator's wording and any field name; `dlq list` shows it."""
_CLEAR_KEY = _shape(rf"{_SUBJECT}(?:/(?:{_KEY_ID}|{re.escape(ERASED_MARK)}))?"
                    rf"|{_TOPIC}:{_PARTITION}:{_OFFSET}(?::[0-9a-f]{{32}})?")
"""Keys of ours besides a commune code: a subject (the privacy audit), `<subject>/<key id>` (the key topics), and
`<dlq topic>:<partition>:<offset>[:<digest>]` (the replay log, `schemas.replay`)."""


def shown_key(key: bytes | None) -> str:
    """A record's key as shown by default: a commune code (`dead_letter_key`'s rule: five digits) or another key of
    ours (`_CLEAR_KEY`), or no key, as it is; any other key as its length only (a producer's key may be a CCCD)."""
    if not key:
        return ""
    if dead_letter_key(key, ()) is not None or _CLEAR_KEY(key):
        return personal_numbers_masked(key.decode("ascii"))
    return withheld(key)


def shown_header(name: str, value: bytes | None) -> tuple[str, str]:
    """A header's name and value as shown by default. The value as it is when it has its name's closed shape: one
    `clear_headers` keeps on a dead letter (`CLEAR_HEADERS`), or a `dlq.*` one (`DLQ_HEADERS`); no value or an empty one
    as ""; any other as its length only. The name as it is when each of its dot-separated parts is a plain name
    (`limits.shown_key`), else as its length. Nine digits or more in a row are masked even in a closed shape (a trace
    id is hex: one in five holds such a run)."""
    shown = name if all(limits.shown_key(part) == part for part in name.split(".")) else withheld(name, "masked name")
    if not value:
        return shown, ""
    if name == Header.SOURCE_WRITTEN_AT and value.isdigit() and len(value) <= 15:  # ms: a time identifies nobody
        return shown, _utc_ms(int(value))  # as a time (13 digits in a row would be masked as a phone's)
    check = DLQ_HEADERS.get(name)
    if clear_headers([(name, value)]) or (check is not None and len(value) <= 256 and check(value)):
        return shown, personal_numbers_masked(decoded(value))
    return shown, withheld(value)


def _utc_ms(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):  # past year 9999: not a time intake wrote
        return withheld(str(ms).encode())
