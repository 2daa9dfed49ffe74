"""Key records as a keyring reads and writes them: their bytes on the key topic (`encoded`), the reader that decides
which it refuses (`READER`), and why a key cannot be used (`KeyUnknown`, `KeyUnreadable`, `RecordRefused`)."""

from __future__ import annotations

import hashlib
import json
from typing import Final

import pydantic_core

from schemas.personal import KeyRecord
from services.privacy.crypto import Erased, PrivacyError


class KeyUnknown(Erased):
    """No record of this key here yet, and no tombstone either: the key store may lag (refresh, then it is erased)."""


class KeyUnreadable(PrivacyError):
    """The key's record was read but this keyring could not unwrap it (wrapped under a key-encryption key it was not
    given, as in a rolling KEK rotation, or damaged): not an erasure. A value under it waits until the service is
    given that KEK (restarted); it is never counted as erased (an audit found such messages marked done, erased)."""


class RecordRefused(PrivacyError):
    """A key record this reader refuses by its bytes alone, whatever KEKs it is given: not the shape of a key record
    (a time out of bounds, a member missing) or not the key its record key names. Read again only by another reader
    (`READER`): a kept table remembers it was refused there instead of reading the topics whole at every start."""


READER: Final = hashlib.sha256(json.dumps([KeyRecord.model_json_schema(), pydantic_core.__version__],
                                          sort_keys=True).encode()).digest()
"""What decides which key records `RecordRefused` refuses: the record's schema and pydantic's parser. A reader that
differs (an upgrade that widens the schema) gives the records refused before another chance (ADR 0034)."""


def encoded(record: KeyRecord) -> bytes:
    """A key record's value on the key topic (its JSON, without the absent expiry)."""
    return record.__pydantic_serializer__.to_json(record, exclude_none=True)


def record_digest(value: bytes) -> bytes:
    """A key record's bytes, digested: what a keyring keeps of a record read back and checked (`_Key.digest`)."""
    return hashlib.blake2b(value, digest_size=16).digest()
