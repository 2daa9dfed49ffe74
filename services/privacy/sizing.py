"""The size of an event as intake publishes it, its applicant sealed (ADR 0015), known without intake's keys.

What sealing writes has the same length under any keys: a subject is `a-` or `d-` and an HMAC-SHA256 in base64url
whatever the pepper, a key id 16 random bytes in base64url, a token its value's bytes with a nonce and a tag of fixed
length (AES-GCM adds no padding). So an event sealed by `applicant.seal_event` under `StandInKeys`, keys of its own
thrown away after, is as long as intake's sealed event: the gateway measures it to refuse what intake would
dead-letter for its size (`payload_too_large`), which it answered 202 (contracts audit: a 1,015,441-byte dossier
whose canonical form passed `INTAKE_MAX_CANONICAL_BYTES`).
"""

from __future__ import annotations

import os
from datetime import datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.codes import Locale
from schemas.envelope import Event, built
from schemas.personal import MAX_TOKEN_LENGTH, PERSONAL_FIELDS, KeyRecord, SealedApplicant
from services.privacy import crypto
from services.privacy.applicant import SealingKeys, seal_event
from services.privacy.pseudonyms import Pseudonyms

SUBJECT_CHARACTERS = 80
"""The longest subject a sealed applicant may name (`schemas.personal.SUBJECT_PATTERN`); intake's are 45."""
KEY_ID_CHARACTERS = 40
"""The longest key id (`schemas.personal.KEY_ID_PATTERN`); intake's are 22 (`crypto.new_key_id`)."""


class StandInKeys(Pseudonyms):
    """A keyring of intake's shapes (`SealingKeys`): a random pepper and one random key, no key record, nothing
    remembered (a keyring keeps every subject it sealed for; the gateway would keep every applicant's). One per use:
    building it costs a key, less than sealing one applicant."""

    def __init__(self) -> None:
        super().__init__(os.urandom(crypto.KEY_BYTES))
        self._key_id, self._key = crypto.new_key_id(), AESGCM(crypto.new_key())

    def key_for(self, subject: str, /, *,
                written_at: datetime | None = None) -> tuple[str, crypto.Key, list[KeyRecord]]:
        return self._key_id, self._key, []


def sealed_as_intake(event: Event, keys: SealingKeys | None = None) -> Event:
    """`event` as the canonical topic will carry it, sealed under `keys` (new `StandInKeys` by default): of the size
    intake's is. Only for measuring: its tokens open under no key intake knows."""
    return seal_event(keys if keys is not None else StandInKeys(), event)[0]


def _fullest_sealed_applicant() -> int:
    """The encoded length of the largest sealed applicant a record may carry: every personal field a token of the
    longest (`MAX_TOKEN_LENGTH`), the longest subject, key id and locale."""
    tokens = dict.fromkeys(PERSONAL_FIELDS, "A" * MAX_TOKEN_LENGTH)
    applicant = built(SealedApplicant, {"subject", "key_id", "preferred_locale", *tokens}, {
        "subject": "a" * SUBJECT_CHARACTERS, "key_id": "k" * KEY_ID_CHARACTERS, **tokens,
        "preferred_locale": max(Locale, key=lambda locale: len(locale.value))})
    return len(applicant.__pydantic_serializer__.to_json(applicant, exclude_none=True))


MOST_SEALING_ADDS = _fullest_sealed_applicant()
"""At most what sealing adds to an event's encoded value (the fullest sealed applicant in place of a clear one of no
bytes): an event this far below the canonical limit needs no sealing to know it fits."""
