"""Sealing intake's dead letters, pure: the original record stays whole (replayable), but encrypted.

A rejected record may be anything, and may hold anyone's personal data, in its value,
its key (a producer keying by CCCD or phone) or its headers (`x-applicant-phone`, a
`ce_subject` holding a citizen id). When its applicant can be told (a CCCD, phone,
e-mail or Zalo id where a dossier keeps them, structured, binary or portal shape), it is sealed
under that applicant's key, so erasing them erases it too: their permanent key if they
have one, else a key of theirs that expires with the dead letter (a junk record naming a
CCCD never seen mints no key that outlives it). Otherwise it is sealed under the key of
its day (`dlq:<date>`). A key that expires does so once the dead-letter retention has
passed: its record then leaves `commune.keys.deadletters` (its own retention) and every
keyring forgets it.

The dead letter's value is nonce || ciphertext (binary, no base64: dead letters run to
10 MiB) of the original key, headers and value (`OriginalRecord.pack`, layout
`record.v1`, ADR 0026), bound to the record's origin and layout (`dlq/<topic>/<partition>/<offset>/record.v1`).
In clear stay only what identifies nobody: a copy of each header `CLEAR_HEADERS`
allows whose value has that header's shape, and as the dead letter's key the commune
code the record names, if any. Dead letters written before (layout absent: the value
alone sealed, key and headers in clear) still open.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from schemas import wire
from schemas.deadletter import OriginalRecord
from schemas.events import EVENT_TYPES
from schemas.personal import RECORD_LAYOUT, SEALED_KEY_HEADER, SEALED_LAYOUT_HEADER, SEALED_SUBJECT_HEADER, KeyRecord
from services.intake.portal import COMMUNE_HEADER
from services.privacy import crypto
from services.privacy.keyring import Keyring

Headers = Sequence[tuple[str, bytes | None]]
MAX_INSPECTED_BYTES = 1024 * 1024
"""Larger values are not parsed to find their applicant (intake refuses them anyway): the day key seals them."""
_PATHS = (("data", "applicant"), ("applicant",), ())
_FIELDS = (("cccd", ("id_number", "SoGiayToChuHoSo")), ("phone", ("phone", "SoDienThoaiChuHoSo")),
           ("email", ("email", "EmailChuHoSo")), ("zalo", ("zalo_user_id",)))
"""An applicant's identifiers in the order intake's sealing takes them (`applicant.subject_of`), by their names in
each shape (the portal has no Zalo id)."""


def origin_aad(source_topic: str, partition: int, offset: int, layout: bytes | None = None) -> bytes:
    """What a dead letter's ciphertext is bound to: its origin, and its layout when it has one (record.v1 on): a
    reader that does not know the layout (an older `commune-bus`) fails to open it and counts it unreadable,
    rather than taking the packed record for the value and replaying it."""
    origin = f"dlq/{source_topic}/{partition}/{offset}".encode()
    return origin if layout is None else origin + b"/" + layout


def day_subject(day: date) -> str:
    return f"dlq:{day.isoformat()}"


def identify(keyring: Keyring, value: bytes) -> str | None:
    """The applicant's subject if the record names one where dossiers keep it; None otherwise. Never raises."""
    if len(value) > MAX_INSPECTED_BYTES:
        return None
    try:
        obj: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    for path in _PATHS:
        group = obj
        for step in path:
            group = group.get(step) if isinstance(group, dict) else None
        if not isinstance(group, dict):
            continue
        for kind, names in _FIELDS:
            for name in names:
                found = group.get(name)
                # an identifier of one person only, as intake's sealing takes it (`applicant.subject_of`): a placeholder
                # ("-", "N/A") would seal strangers' dead letters under one key no erasure of theirs reaches
                if isinstance(found, str) and len(found) <= 254 and crypto.identifies(kind, found):
                    return keyring.subject(kind, found)
    return None


_COMMUNE = re.compile(rb"[0-9]{5}")


def _shape(pattern: bytes, flags: int = 0) -> Callable[[bytes], bool]:
    compiled = re.compile(pattern, flags)
    return lambda value: compiled.fullmatch(value) is not None


def _ascii(check: Callable[[str], bool]) -> Callable[[bytes], bool]:
    return lambda value: value.isascii() and check(value.decode("ascii"))


CLEAR_MEDIA_TYPES: frozenset[bytes] = frozenset({
    b"application/json", b"application/cloudevents+json", b"application/cloudevents-batch+json",
    b"application/x-ndjson", b"application/ndjson", b"application/jsonl", b"application/json-seq",
})
"""The media types the project reads (the gateway's `READABLE`; intake reads JSON): the only `content-type` values
kept in clear. A media type's shape alone can hold a number or a name (`application/012345678901`)."""
_UTF8 = (b"charset=utf-8", b"charset=utf8", b'charset="utf-8"')


def _known_media_type(value: bytes) -> bool:
    """One of `CLEAR_MEDIA_TYPES`, any case, with at most a UTF-8 charset parameter."""
    media, semicolon, parameter = value.lower().partition(b";")
    return media.strip() in CLEAR_MEDIA_TYPES and (not semicolon or parameter.strip() in _UTF8)


CLEAR_HEADERS: dict[str, Callable[[bytes], bool]] = {
    "ce_specversion": _shape(rb"[0-9]\.[0-9]"),
    "ce_type": _ascii(EVENT_TYPES.__contains__),
    "ce_time": _shape(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                      rb"(Z|[+-][0-9]{2}:[0-9]{2})?"),
    "ce_commune": _shape(_COMMUNE.pattern),
    "ce_province": _shape(rb"[0-9]{2}"),
    wire.CONTENT_TYPE: _known_media_type,
    COMMUNE_HEADER: _shape(_COMMUNE.pattern),
}
"""The original headers a dead letter also keeps in clear, each only when its value has this shape: closed shapes
(a version, a known event type, a time, a commune or province code, a media type the project reads) that cannot
hold a name, number or address. What a producer writes freely (`ce_id`, `ce_source`, `ce_subject`,
`ce_traceparent`, the portal's `source`, any header of its own) is sealed only: a dossier code or an id may be a
citizen's number, and so may a producer's 32-hex trace id, or be recovered from a derived one (an unkeyed hash of
source and event id). The sealed copy is the one replay restores; these are for operators and `commune-bus trace`."""


def clear_headers(headers: Headers) -> list[tuple[str, bytes]]:
    """The headers of `headers` a dead letter keeps in clear (`CLEAR_HEADERS`), in their order."""
    out: list[tuple[str, bytes]] = []
    for name, value in headers:
        check = CLEAR_HEADERS.get(name)
        if check is not None and isinstance(value, bytes) and len(value) <= 256 and check(value):
            out.append((name, value))
    return out


def dead_letter_key(key: bytes | None, headers: Headers) -> bytes | None:
    """The dead letter's own key: the commune code the record names (its key, else its `ce_commune` or `commune-code`
    header), five digits that identify nobody and place it in its commune's partition (ADR 0004); else none."""
    for candidate in (key, *(v for name, v in headers if name in ("ce_commune", COMMUNE_HEADER))):
        if isinstance(candidate, bytes) and _COMMUNE.fullmatch(candidate):
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class SealedDeadLetter:
    key: bytes | None
    """The dead letter's key (`dead_letter_key`): a commune code, or None."""
    value: bytes
    """nonce || AES-GCM ciphertext of the original record (`OriginalRecord.pack`)."""
    headers: list[tuple[str, bytes]]
    """The clear copies (`clear_headers`), then `dlq.sealed.subject|key|layout`; intake adds its `dlq.*` after."""
    keys: list[KeyRecord]
    """Key records to write in the same transaction."""


def seal_dead_letter(keyring: Keyring, key: bytes | None, value: bytes | None, headers: Headers, *,
                     source_topic: str, partition: int, offset: int, rejected_on: date,
                     retention_days: int, written_at: datetime | None = None) -> SealedDeadLetter:
    """The dead letter of the record (`key`, `value`, `headers`) rejected at `source_topic`/`partition`/`offset`.

    A record without a value (a tombstone) is sealed too: its key and headers may be personal. One written
    (`written_at`) before its applicant's erasure is sealed already erased (`Keyring.key_for`): no replay brings it
    back as new data.
    """
    subject = (identify(keyring, value) if value is not None else None) or day_subject(rejected_on)
    # the applicant's permanent key if they have one, else a key that lasts as long as the letter (`key_for`)
    expires_at = datetime.combine(rejected_on + timedelta(days=1 + retention_days), time(0), UTC)
    key_id, dek, records = keyring.key_for(subject, expires_at, written_at=written_at)
    plain = OriginalRecord(key, value, list(headers)).pack()
    sealed = crypto.seal_raw(dek, plain, origin_aad(source_topic, partition, offset, RECORD_LAYOUT))
    marks = [(SEALED_SUBJECT_HEADER, subject.encode()), (SEALED_KEY_HEADER, key_id.encode()),
             (SEALED_LAYOUT_HEADER, RECORD_LAYOUT)]
    return SealedDeadLetter(dead_letter_key(key, headers), sealed, [*clear_headers(headers), *marks], records)


def is_sealed(headers: Headers) -> bool:
    return any(k == SEALED_KEY_HEADER for k, _ in headers)


def open_dead_letter(keyring: Keyring, key: bytes | None, value: bytes | None, headers: Headers, *,
                     source_topic: str, partition: int, offset: int) -> OriginalRecord:
    """The dead letter as intake would have written it unsealed: the original key and value, the original headers
    followed by intake's `dlq.*` ones (a letter never sealed: as it is).

    `Erased` once its key is gone (the applicant erased, the day key expired), `Tampered` if its bytes, origin or
    key do not match, ValueError for a layout this code does not know or bytes that are not its layout.
    """
    if not is_sealed(headers):
        return OriginalRecord(key, value, list(headers))
    h = {k: v for k, v in headers if k.startswith("dlq.sealed.")}
    layout = h.get(SEALED_LAYOUT_HEADER)
    if layout not in (None, RECORD_LAYOUT):
        raise ValueError("a dead-letter layout this reader does not know")
    if value is None:
        raise ValueError("a sealed dead letter without a value")
    dek = keyring.dek(wire.lenient_text(h.get(SEALED_SUBJECT_HEADER)), wire.lenient_text(h.get(SEALED_KEY_HEADER)))
    plain = crypto.open_raw(dek, value, origin_aad(source_topic, partition, offset, layout))
    if layout is None:  # the value alone was sealed: key and headers are the dead letter's own
        return OriginalRecord(key, plain, _unsealed(headers))
    original = OriginalRecord.unpack(plain)
    context = [(k, v) for k, v in _unsealed(headers) if k.startswith("dlq.")]
    return OriginalRecord(original.key, original.value, [*original.headers, *context])


def _unsealed(headers: Headers) -> list[tuple[str, bytes | None]]:
    return [(k, v) for k, v in headers if not k.startswith("dlq.sealed.")]
