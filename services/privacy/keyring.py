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

from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.limits import EARLIEST, LATEST
from schemas.personal import ERASED_KEY, ERASED_MARK, ErasureMark, KeyRecord
from services.privacy import crypto
from services.privacy.crypto import Erased, PrivacyError
from services.privacy.key_records import KeyUnknown, KeyUnreadable, RecordRefused, record_digest
from services.privacy.key_tables import KeyTable, MemoryKeys, _Key, new_key
from services.privacy.pseudonyms import Pseudonyms

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


_AFTER = timedelta(microseconds=1)
CIPHERS_KEPT = 4096
"""AES-GCM objects kept built, for the keys used last (~2.5 KB each, OpenSSL's context: one per key held was more
than half of a keyring's memory); another key's is built again on use (~1.3 µs, a seal costs ~0.7)."""
EXPIRED_AT_ONCE = 10_000
"""Keys `expire` forgets at most in one call (0.1-0.4 s on disk, 2026-12-06), its list of due ones bounded with it."""


class Keyring(Pseudonyms):
    """Data keys by subject. Not thread-safe; one per event loop (the key store and the pure code share it)."""

    def __init__(self, keks: Mapping[str, bytes], kek_id: str, pepper: bytes, *, clock: Clock = utcnow,
                 table: KeyTable | None = None) -> None:
        if kek_id not in keks:
            raise PrivacyError("the current key-encryption key id has no key")
        if any(len(k) != crypto.KEY_BYTES for k in keks.values()) or len(pepper) < 16:
            raise PrivacyError("key-encryption keys must be 32 bytes and the pepper at least 16")
        self._keks = {kid: AESGCM(k) for kid, k in keks.items()}
        super().__init__(pepper)
        self._kek_id, self._clock = kek_id, clock
        self._keys: KeyTable = MemoryKeys() if table is None else table
        self._built: deque[_Key] = deque()
        """The keys whose AESGCM is built, oldest first (`CIPHERS_KEPT`)."""
        self._erased = self._keys.erased()
        self._unreadable = self._keys.unreadable()
        """Keys whose record `apply` could not read (`KeyUnreadable`): one entry per such record, as `_erased`."""
        self._marks = self._keys.marks()
        """Per erased subject, the latest erasure mark's time: its keys created up to it are erased."""
        self.more_due = False
        """The last `expire` took a whole batch off the index (forgotten or stale): more may be due now."""

    # --- keys -----------------------------------------------------------------------------------

    def key_for(self, subject: str, expires_at: datetime | None = None, *,
                written_at: datetime | None = None) -> tuple[str, AESGCM, list[KeyRecord]]:
        """A key of `subject` to seal under, created if none fits; its record too unless confirmed.

        Without `expires_at` (data kept for good: canonical events), a key that never expires, never one that does:
        data sealed under a dead letter's expiring key would become unreadable with it. With `expires_at` (a dead
        letter, gone from its topic by then), the subject's permanent key if it has one (an erasure reaches the
        letter with the rest), else one expiring no earlier: a junk record naming a new CCCD mints no permanent key.
        Among several that fit (two workers made one each at once), the newest.

        `written_at`: when the record being sealed was written to Kafka. Written up to the subject's erasure mark,
        it is data the erasure was asked for, read late (intake down or behind): sealed already erased, under
        `ERASED_KEY` and a key dropped at once, never under a live key of the subject, even one made since for its
        new data (ADR 0042). Nothing to write: every keyring answers `Erased` for that key id. A key made for it is
        dated by it, the broker's clock, as the mark is (ADR 0043); without it, by this keyring's clock.
        """
        if written_at is not None and (mark := self._marks.get(subject)) is not None and written_at <= mark:
            return ERASED_KEY, AESGCM(crypto.new_key()), []
        keys = self._keys.get(subject)
        if keys is not None and len(keys) == 1 and keys[0].expires_at is None:  # the hot path: an applicant's one key
            only = keys[0]
            return only.key_id, only.aead or self._build(only), only.records()
        now = self._clock()
        if expires_at is not None:  # in UTC (JSON holds no offset finer than a minute) and within what every
            expires_at = min(max(expires_at, EARLIEST), LATEST).astimezone(UTC)  # reader takes (`KeyRecord`)
        fitting = [k for k in keys or () if k.expires_at is None]
        if not fitting and expires_at is not None:
            fitting = [k for k in keys or () if k.expires_at is not None and k.expires_at > now
                       and k.expires_at >= expires_at]
        if fitting:
            newest = max(fitting, key=lambda k: (k.created_at, k.key_id))
            return newest.key_id, newest.aead or self._build(newest), newest.records()
        # by a worker's clock, 71 s fast, a key made before an erasure was dated after its mark and outlived it
        created = now if written_at is None else min(max(written_at, EARLIEST), LATEST).astimezone(UTC)
        if (mark := self._marks.get(subject)) is not None and created <= mark:  # an erased subject's new data: a
            created = min(mark + _AFTER, LATEST)  # key no reader refuses (the mark covers a margin for clocks beyond
            # the erasure); a mark at the end of time erases every key, this one too, but its record still reads
        key = new_key(self._keks[self._kek_id], self._kek_id, subject, created, expires_at)
        self._keys.put(subject, (*(keys or ()), key))
        if expires_at is not None:
            self._keys.expires(subject, key.key_id, expires_at)
        return key.key_id, self._build(key), key.records()

    def _build(self, key: _Key) -> AESGCM:
        """The key's AESGCM, built now and kept while it is among the `CIPHERS_KEPT` built last."""
        key.aead = aead = AESGCM(key.dek)
        self._built.append(key)
        if len(self._built) > CIPHERS_KEPT:
            self._built.popleft().aead = None
        return aead

    def _find(self, subject: str, key_id: str) -> _Key | None:
        for key in self._keys.get(subject) or ():
            if key.key_id == key_id:
                return key
        return None

    def dek(self, subject: str, key_id: str) -> AESGCM:
        """The data key to open a value; `Erased` if tombstoned, expired or sealed already erased (`ERASED_KEY`),
        `KeyUnknown` if never seen."""
        if key_id == ERASED_KEY:  # first: a record written under that id (none is) must not make it anything else
            raise Erased("sealed after its subject's erasure, from a record written before it")
        key = self._find(subject, key_id)
        if key is None:
            if (subject, key_id) in self._erased:
                raise Erased("the data key was erased")
            if (subject, key_id) in self._unreadable:
                raise KeyUnreadable("the data key's record could not be read here (a key-encryption key not given?)")
            raise KeyUnknown("no such data key (yet)")
        if key.expires_at is not None and key.expires_at <= self._clock():
            raise Erased("the data key has expired")
        return key.aead or self._build(key)

    def unreadable_keys(self) -> int:
        """Keys whose last record read here could not be read (a KEK not given, damage), and not erased since: a key
        re-wrapped under a KEK this keyring has is readable again once its new record is read."""
        return len(self._unreadable)

    def key_ids(self, subject: str) -> list[str]:
        return sorted(k.key_id for k in self._keys.get(subject) or ())

    def __len__(self) -> int:
        return self._keys.count()

    def close(self) -> None:
        """Let go of the keys' table (a run's store on disk is removed with its folder); not used after."""
        self._keys.close()

    def offsets(self) -> dict[tuple[str, int], int]:
        """Where the key store goes on reading the key topics (empty: from the beginning; ADR 0034)."""
        return self._keys.offsets()

    def checkpoint(self, offsets: Mapping[tuple[str, int], int],
                   fenceposts: Mapping[tuple[str, int], tuple[int, bytes]] | None = None) -> None:
        """Every key-topic record before `offsets` is applied (a kept table starts there next time); `fenceposts`:
        the last record applied in each partition, checked again at the next start (topics made again)."""
        self._keys.checkpoint(offsets, fenceposts)

    def fenceposts(self) -> dict[tuple[str, int], tuple[int, bytes]]:
        return self._keys.fenceposts()

    def skipped(self, refused: bool = False) -> None:
        """A key-topic record was not applied (unreadable here): a kept table reads the topics whole next time, so
        the record gets another chance (a KEK given since, a reader upgraded); `refused` (`RecordRefused`, on the
        compacted topic): only once another `READER` reads the table (the same one would refuse it again)."""
        self._keys.skipped(refused)

    def clear(self) -> None:
        """Forget every key and what was erased (the key store reads the topics from the beginning again)."""
        for key in self._built:
            key.aead = None
        self._built.clear()
        self._keys.clear()

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
        known = self._find(subject, key_id)
        if known is not None and known.digest is not None and record_digest(value) == known.digest:
            return  # byte for byte a record read and checked here before (a pending key's record written again)
        try:
            record = KeyRecord.model_validate_json(value)
        except ValueError:
            raise RecordRefused("unreadable key record") from None
        if (record.subject, record.key_id) != (subject, key_id):
            raise RecordRefused("key record does not match its record key")
        if (mark := self._marks.get(subject)) is not None and record.created_at <= mark:
            self.forget(subject, key_id)  # erased with its subject (one made here too: the next use makes a new key)
            return
        kek = self._keks.get(record.kek_id)
        if kek is None:
            raise PrivacyError("key record wrapped under an unknown key-encryption key")
        dek = crypto.unwrap(kek, record.wrapped, subject, key_id)  # our own pending key too: the record is the truth
        if known is not None:  # a key made here, read back: confirmed; a digest of its bytes is kept, so the copies
            # still to come (it went with every transaction that used it) are recognised without parsing each
            known.record, known.digest = None, record_digest(value)
            if record.expires_at is not None and record.expires_at != known.expires_at:
                self._keys.expires(subject, key_id, record.expires_at)
            known.created_at, known.expires_at = record.created_at, record.expires_at
            # kept as changed (a table on disk writes it again)
            self._keys.put(subject, tuple(known if k.key_id == key_id else k for k in self._keys.get(subject) or ()))
            return
        key = _Key(key_id, dek, record.created_at, record.expires_at)
        self._keys.put(subject, (*(self._keys.get(subject) or ()), key))
        if record.expires_at is not None:
            self._keys.expires(subject, key_id, record.expires_at)

    def _mark(self, subject: str, value: bytes) -> None:
        """An erasure mark: forget the subject's keys created up to it, and remember it for records read later."""
        try:
            # read tolerantly (ADR 0023, 0035): members a newer `ErasureMark` adds are ignored; read strictly, an
            # eraser upgraded first had every older reader skip its marks, and those erasures were not done whole
            mark = ErasureMark.model_validate_json(value, extra="ignore")
        except ValueError:
            raise PrivacyError("unreadable erasure mark") from None
        if mark.subject != subject:
            raise PrivacyError("erasure mark does not match its record key")
        self._marks[subject] = max(mark.created_up_to, self._marks.get(subject, mark.created_up_to))
        for key in self._keys.get(subject) or ():
            if key.created_at <= self._marks[subject]:
                self.forget(subject, key.key_id)

    def forget(self, subject: str, key_id: str, *, erased: bool = True) -> None:
        """Drop a key: its data key leaves memory now (review: a forgotten key's bytes stayed referenced from the
        built ciphers until 4,096 newer keys were built). `erased` (a tombstone, a mark): remembered for good, so a
        copy read later stays refused and a value under it is `Erased` at once; an expired key is not remembered (its
        copy read again carries its expiry), so expiring keys leave no trace behind."""
        keys = self._keys.get(subject) or ()
        for key in keys:
            if key.key_id == key_id:
                key.aead, key.dek, key.record = None, b"", None
        if kept := tuple(k for k in keys if k.key_id != key_id):  # one write (review: a pop and a put apart, cut
            self._keys.put(subject, kept)  # by a kill between them, lost a subject's other keys on disk)
        else:
            self._keys.pop(subject)
        if erased:
            self._erased.add((subject, key_id))
            self._keys.shred(subject)
        self._unreadable.discard((subject, key_id))

    def expire(self) -> int:
        """Forget keys past their expiry (day keys, a dead letter's applicant key: the dead letters under them are
        gone from their topic), of the first `EXPIRED_AT_ONCE` due in the table's index; how many. The key store calls
        it (`store.KeyStore.run`): the index gives the due keys only, never every key (a sweep of 20 M keys held the
        event loop ~1.3 s, review), and a day's dead letters' keys go a batch at a time, not all in one call."""
        now, gone = self._clock(), 0
        due = self._keys.due(now, EXPIRED_AT_ONCE)
        self.more_due = len(due) >= EXPIRED_AT_ONCE  # stale entries too: a batch of them alone says nothing more
        for subject, key_id in due:
            key = self._find(subject, key_id)
            if key is not None and key.expires_at is not None and key.expires_at <= now:
                self.forget(subject, key_id, erased=False)
                gone += 1
        return gone
