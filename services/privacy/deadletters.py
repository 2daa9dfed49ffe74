"""Sealing intake's dead letters, pure: the original bytes stay whole (replayable), but encrypted.

A rejected record may be anything, and may hold anyone's personal data. When its
applicant can be told (a CCCD, phone or e-mail where a dossier keeps them, structured,
binary or portal shape), the value is sealed under that applicant's key, so erasing
them erases it too. Otherwise it is sealed under the key of its day (`dlq:<date>`),
which expires once the dead-letter retention has passed: the key record then leaves
`commune.keys.deadletters` (its own retention) and every keyring forgets it.
The value is nonce || ciphertext (binary, no base64: dead letters run to 10 MiB), bound
to the record's origin (`dlq/<topic>/<partition>/<offset>`); headers stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from schemas import wire
from schemas.personal import SEALED_KEY_HEADER, SEALED_SUBJECT_HEADER, KeyRecord
from services.privacy import crypto
from services.privacy.keyring import Keyring

Headers = Sequence[tuple[str, bytes]]
MAX_INSPECTED_BYTES = 1024 * 1024
"""Larger values are not parsed to find their applicant (intake refuses them anyway): the day key seals them."""
_PATHS = (("data", "applicant"), ("applicant",), ())
_FIELDS = (("cccd", ("id_number", "SoGiayToChuHoSo")), ("phone", ("phone", "SoDienThoaiChuHoSo")),
           ("email", ("email", "EmailChuHoSo")))


def origin_aad(source_topic: str, partition: int, offset: int) -> bytes:
    return f"dlq/{source_topic}/{partition}/{offset}".encode()


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


def seal_dead_letter(keyring: Keyring, value: bytes | None, *, source_topic: str, partition: int, offset: int,
                     rejected_on: date, retention_days: int) -> tuple[bytes | None, list[tuple[str, bytes]],
                                                                     list[KeyRecord]]:
    """(sealed value, headers to add, key records to write in the same transaction) for one dead letter.

    A record without a value (a tombstone) has nothing to seal and is returned as it is.
    """
    if value is None:
        return None, [], []
    subject = identify(keyring, value)
    expires_at = None
    if subject is None:
        subject = day_subject(rejected_on)
        expires_at = datetime.combine(rejected_on + timedelta(days=1 + retention_days), time(0), UTC)
    key_id, dek, records = keyring.key_for(subject, expires_at)
    sealed = crypto.seal_raw(dek, value, origin_aad(source_topic, partition, offset))
    headers = [(SEALED_SUBJECT_HEADER, subject.encode()), (SEALED_KEY_HEADER, key_id.encode())]
    return sealed, headers, records


def is_sealed(headers: Headers) -> bool:
    return any(k == SEALED_KEY_HEADER for k, _ in headers)


def open_dead_letter(keyring: Keyring, value: bytes | None, headers: Headers, *, source_topic: str, partition: int,
                     offset: int) -> bytes | None:
    """The original bytes of a dead letter (as they are if it was never sealed); `Erased` once its key is gone."""
    if value is None or not is_sealed(headers):
        return value
    h = {k: wire.lenient_text(v) for k, v in headers if k in (SEALED_SUBJECT_HEADER, SEALED_KEY_HEADER)}
    dek = keyring.dek(h.get(SEALED_SUBJECT_HEADER, ""), h.get(SEALED_KEY_HEADER, ""))
    return crypto.open_raw(dek, value, origin_aad(source_topic, partition, offset))
