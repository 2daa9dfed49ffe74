"""The keyring: unwrapped data keys in memory, used synchronously by pure code (intake's decision, notify's rules).

A key is *pending* from its creation here until the key topic gives its record back
(`apply`, fed by `store.KeyStore`); while pending, every use returns its record again, so
each transaction that holds a value sealed under the key also holds the key (a key
created in an aborted transaction is written by the next one that uses it; records
are idempotent: same record key, same value). Two workers may create keys for one
subject at once: both are kept (record key `<subject>/<key id>`), each ciphertext names
its key. A tombstone forgets the key at once; opening a value under it raises `Erased`.
A subject's erasure mark (`schemas.personal.ErasureMark`) forgets every key of the subject
created up to it, and refuses such a key's record read after it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.envelope import built
from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord
from services.privacy import crypto
from services.privacy.crypto import Erased, PrivacyError

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class KeyUnknown(Erased):
    """No record of this key here yet, and no tombstone either: the key store may lag (refresh, then it is erased)."""


class KeyUnreadable(PrivacyError):
    """The key's record was read but this keyring could not unwrap it (wrapped under a key-encryption key it was not
    given, as in a rolling KEK rotation, or damaged): not an erasure. A value under it waits until the service is
    given that KEK (restarted); it is never counted as erased (an audit found such messages marked done, erased)."""


def encoded(record: KeyRecord) -> bytes:
    """A key record's value on the key topic (its JSON, without the absent expiry)."""
    return record.__pydantic_serializer__.to_json(record, exclude_none=True)


_RECORD_FIELDS = frozenset(KeyRecord.model_fields)
_AFTER = timedelta(microseconds=1)


@dataclass
class _Key:
    record: KeyRecord
    aead: AESGCM
    confirmed: bool
    value: bytes | None = None
    """For a key made here: its record's bytes as read back and checked (`apply`); later copies are not parsed."""


class Keyring:
    """Data keys by subject. Not thread-safe; one per event loop (the key store and the pure code share it)."""

    def __init__(self, keks: Mapping[str, bytes], kek_id: str, pepper: bytes, *, clock: Clock = utcnow) -> None:
        if kek_id not in keks:
            raise PrivacyError("the current key-encryption key id has no key")
        if any(len(k) != crypto.KEY_BYTES for k in keks.values()) or len(pepper) < 16:
            raise PrivacyError("key-encryption keys must be 32 bytes and the pepper at least 16")
        self._keks = {kid: AESGCM(k) for kid, k in keks.items()}
        self._kek_id, self._clock = kek_id, clock
        self._pepper = crypto.keyed_pepper(pepper)
        self._keys: dict[str, dict[str, _Key]] = {}
        self._erased: set[tuple[str, str]] = set()
        self._unreadable: set[tuple[str, str]] = set()
        """Keys whose record `apply` could not read (`KeyUnreadable`): one entry per such record, as `_erased`."""
        self._marks: dict[str, datetime] = {}
        """Per erased subject, the latest erasure mark's time: its keys created up to it are erased."""

    # --- subjects -------------------------------------------------------------------------------

    def subject(self, kind: str, value: str) -> str:
        """The pseudonymous subject id of an identifier (`cccd`, `phone`, `email`, `zalo`)."""
        return crypto.identifier_subject(self._pepper, kind, value)

    def dossier_subject(self, source: str, dossier_code: str) -> str:
        """The subject of an applicant with no CCCD, phone, e-mail or Zalo id: their dossier's (`erase_subject`)."""
        return crypto.dossier_subject(self._pepper, source, dossier_code)

    @staticmethod
    def anonymous_subject() -> str:
        """A random `r-` subject, as intake gave such an applicant before 2026-12-03 (a new one, hence a new permanent
        key, for every event): such subjects stay in old data, readable and erasable; nothing seals under new ones."""
        return "r-" + crypto.b64(os.urandom(16))

    # --- keys -----------------------------------------------------------------------------------

    def key_for(self, subject: str, expires_at: datetime | None = None) -> tuple[str, AESGCM, list[KeyRecord]]:
        """A key of `subject` to seal under, created if none fits; its record too unless confirmed.

        Without `expires_at` (data kept for good: canonical events), a key that never expires, never one that does:
        data sealed under a dead letter's expiring key would become unreadable with it. With `expires_at` (a dead
        letter, gone from its topic by then), the subject's permanent key if it has one (an erasure reaches the
        letter with the rest), else one expiring no earlier: a junk record naming a new CCCD mints no permanent key.
        Among several that fit (two workers made one each at once), the newest.
        """
        keys = self._keys.get(subject)
        if keys is not None and len(keys) == 1:  # an applicant's one key, which never expires: every event of theirs
            (only,) = keys.values()
            if only.record.expires_at is None:
                return only.record.key_id, only.aead, [] if only.confirmed else [only.record]
        now = self._clock()
        held = list((keys or {}).values())
        fitting = [k for k in held if k.record.expires_at is None]
        if not fitting and expires_at is not None:
            fitting = [k for k in held if k.record.expires_at is not None and k.record.expires_at > now
                       and k.record.expires_at >= expires_at]
        if fitting:
            newest = max(fitting, key=lambda k: (k.record.created_at, k.record.key_id))
            return newest.record.key_id, newest.aead, [] if newest.confirmed else [newest.record]
        if (mark := self._marks.get(subject)) is not None and now <= mark:  # an erased subject's new data: a key
            now = mark + _AFTER  # no reader refuses (the mark covers a margin for clocks beyond the erasure)
        key_id, dek = crypto.new_key_id(), crypto.new_key()
        # built, not validated: every value is ours (a subject id, random ids, base64url), and it is the hot path
        record = built(KeyRecord, _RECORD_FIELDS, {
            "subject": subject, "key_id": key_id, "kek_id": self._kek_id,
            "wrapped": crypto.wrap(self._keks[self._kek_id], dek, subject, key_id), "created_at": now,
            "expires_at": expires_at})
        aead = AESGCM(dek)
        self._keys.setdefault(subject, {})[key_id] = _Key(record, aead, confirmed=False)
        return key_id, aead, [record]

    def dek(self, subject: str, key_id: str) -> AESGCM:
        """The data key to open a value; `Erased` if tombstoned or expired, `KeyUnknown` if never seen."""
        key = self._keys.get(subject, {}).get(key_id)
        if key is None:
            if (subject, key_id) in self._erased:
                raise Erased("the data key was erased")
            if (subject, key_id) in self._unreadable:
                raise KeyUnreadable("the data key's record could not be read here (a key-encryption key not given?)")
            raise KeyUnknown("no such data key (yet)")
        if key.record.expires_at is not None and key.record.expires_at <= self._clock():
            raise Erased("the data key has expired")
        return key.aead

    def key_ids(self, subject: str) -> list[str]:
        return sorted(self._keys.get(subject, {}))

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys.values())

    # --- the key topic --------------------------------------------------------------------------

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One key-topic record: a key record confirms (or adds) its key; a tombstone erases it at once, for good.

        A record this keyring cannot read (bad JSON, unknown KEK, failed unwrap) raises `PrivacyError`:
        the caller counts and skips it; it never hides a key that was readable before.
        """
        if key is None:
            return
        subject, _, key_id = key.decode("utf-8", "replace").rpartition("/")
        if value is None:
            self.forget(subject, key_id)
            return
        try:
            self._apply(subject, key_id, value)
            self._unreadable.discard((subject, key_id))  # a copy it can read (re-wrapped under a KEK it has)
        except PrivacyError:
            if (subject, key_id) not in self._erased and key_id != ERASED_MARK:
                self._unreadable.add((subject, key_id))
            raise

    def _apply(self, subject: str, key_id: str, value: bytes) -> None:
        if key_id == ERASED_MARK:
            self._mark(subject, value)
            return
        if (subject, key_id) in self._erased:  # a tombstone is final: key ids are random, never made twice
            return  # (a worker that made the key wrote its record again before it read the erasure's tombstone)
        known = self._keys.get(subject, {}).get(key_id)
        if known is not None and known.value is not None and value == known.value:
            return  # byte for byte a record read and checked here before (a pending key's record written again)
        try:
            record = KeyRecord.model_validate_json(value)
        except ValueError:
            raise PrivacyError("unreadable key record") from None
        if (record.subject, record.key_id) != (subject, key_id):
            raise PrivacyError("key record does not match its record key")
        if (mark := self._marks.get(subject)) is not None and record.created_at <= mark:
            self.forget(subject, key_id)  # erased with its subject (one made here too: the next use makes a new key)
            return
        kek = self._keks.get(record.kek_id)
        if kek is None:
            raise PrivacyError("key record wrapped under an unknown key-encryption key")
        aead = known.aead if known is not None else AESGCM(crypto.unwrap(kek, record.wrapped, subject, key_id))
        if known is not None:  # our own pending key read back: the record must still unwrap (it is the truth)
            crypto.unwrap(kek, record.wrapped, subject, key_id)
        # a key made here is written with every transaction that uses it until this first read-back confirms it:
        # its bytes are kept, so the copies still to come are recognised without parsing and unwrapping each
        self._keys.setdefault(subject, {})[key_id] = _Key(record, aead, confirmed=True,
                                                          value=value if known is not None else None)

    def _mark(self, subject: str, value: bytes) -> None:
        """An erasure mark: forget the subject's keys created up to it, and remember it for records read later."""
        try:
            mark = ErasureMark.model_validate_json(value)
        except ValueError:
            raise PrivacyError("unreadable erasure mark") from None
        if mark.subject != subject:
            raise PrivacyError("erasure mark does not match its record key")
        self._marks[subject] = max(mark.created_up_to, self._marks.get(subject, mark.created_up_to))
        for key_id, key in list(self._keys.get(subject, {}).items()):
            if key.record.created_at <= self._marks[subject]:
                self.forget(subject, key_id)

    def forget(self, subject: str, key_id: str) -> None:
        keys = self._keys.get(subject, {})
        keys.pop(key_id, None)
        if not keys:
            self._keys.pop(subject, None)
        self._erased.add((subject, key_id))
        self._unreadable.discard((subject, key_id))

    def expire(self) -> int:
        """Forget keys past their expiry (day keys, a dead letter's applicant key: the dead letters under them are
        gone from their topic); how many. The key store calls it (`store.KeyStore.run`)."""
        now = self._clock()
        gone = [(s, k) for s, keys in self._keys.items() for k, v in keys.items()
                if v.record.expires_at is not None and v.record.expires_at <= now]
        for subject, key_id in gone:
            self.forget(subject, key_id)
        return len(gone)
