"""The shell of `dlq list`: read the DLQ and the replay log, dead letters sifted and opened as they are read.

`dlq replay` re-drives them in transactions with the namespace's one replay writer (`services/cli/replaying.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from aiokafka import ConsumerRecord

from schemas import wire
from schemas.deadletter import DeadLetterContext, Header
from schemas.personal import SEALED_KEY_HEADER, SEALED_SUBJECT_HEADER
from schemas.replay import DLQ_REPLAYED, letter_digest
from schemas.times import to_utc
from schemas.topics import DLQ_INTAKE, scoped
from services.cli.deadletters import DeadLetter, Filters, Headers, context_matches, dead_letter, matches
from services.cli.kafka_io import visible
from services.common import changelog
from services.common.admin import partition_counts
from services.common.settings import MAX_TRANSACTION_TIMEOUT_MS, KafkaConnection
from services.privacy.crypto import Erased, PrivacyError
from services.privacy.deadletters import is_sealed, open_dead_letter
from services.privacy.erase import keys_written
from services.privacy.key_records import KeyUnknown
from services.privacy.keyring import Keyring
from services.privacy.settings import PrivacySettings
from services.privacy.store import KeyStore

Stored = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]
"""A record as read: partition, offset, key, value, headers (Kafka allows a header without a value)."""
CLIENT_ID = "commune-bus-dlq"


async def read_to_end(conn: KafkaConnection, topic: str, *, absent_ok: bool = False) -> list[Stored]:
    """Every committed record of `topic` up to its end offsets at call time, in offset order per partition."""
    out: list[Stored] = []
    await read_into(conn, topic, out.append, absent_ok=absent_ok)
    return out


async def read_into(conn: KafkaConnection, topic: str, apply: Callable[[Stored], None],
                    since_ms: int | None = None, *, absent_ok: bool = False) -> None:
    """`apply` each committed record of `topic` up to its end offsets at call time, in offset order per partition;
    with `since_ms`, from each partition's first record timestamped at or after it. A topic that is not there never
    reads as empty, unless `absent_ok`: it raises as `kafka_io.visible` does, TopicMissing if it does not exist,
    TopicAuthorizationFailedError if this principal may not describe it (both were "not visible or does not exist",
    for an operator's mistyped --namespace as for a subscriber; CLI trial)."""
    counts = await partition_counts(conn, [topic])
    if topic not in counts and not absent_ok:
        await visible(conn, topic)  # raises, unless it was created meanwhile
        counts = await partition_counts(conn, [topic])
    count = counts.get(topic, 0)

    def keep(partition: int, rec: ConsumerRecord[bytes, bytes]) -> None:
        apply((partition, rec.offset, rec.key, rec.value, list(rec.headers)))

    await changelog.read_to_end(conn, topic, range(count), keep, client_id=CLIENT_ID, since_ms=since_ms)


async def replayed_keys(conn: KafkaConnection, namespace: str) -> set[bytes]:
    """The replay log's keys; none while it does not exist (a listing creates no topic: an operator may not, and
    `dlq list` ended in TopicsNotCreated; `replay` creates it before its first transaction)."""
    log = scoped(DLQ_REPLAYED, namespace)
    return {key for _, _, key, _, _ in await read_to_end(conn, log.name, absent_ok=True) if key is not None}


class Listing(NamedTuple):
    topic: str
    letters: list[DeadLetter]
    """The dead letters matching the filters."""
    done: set[bytes]
    """The replay log's keys: which were already re-driven."""
    unreadable: int
    """Records of the DLQ not listed: no `dlq.*` headers as intake writes them, a reason this CLI does not know,
    or sealed and not openable for another reason than an erased key (altered bytes, an unknown layout)."""
    erased: int
    """Sealed dead letters whose key is gone (their applicant erased, or a day key past the retention) matching the
    filters their clear `dlq.*` headers can be checked on (all but `--source`): unreadable, neither listed nor
    replayed; counted so that the operator is told."""


KEY_WRITE_MARGIN = timedelta(milliseconds=MAX_TRANSACTION_TIMEOUT_MS)
"""The longest an intake transaction lasts after it stamped `dlq.rejected_at` (the broker's transaction timeout cap)."""
SINCE_MARGIN_MS = 3600 * 1000
"""How far before `--since` the DLQ is read from by record timestamp: intake stamps a batch's `rejected_at` before
its records are produced (their timestamp), on the same clock, within one transaction's timeout."""


async def dead_letters(conn: KafkaConnection, namespace: str, filters: Filters) -> Listing:
    """The matching dead letters, with the replay log to tell which were already re-driven; one unreadable dead
    letter is counted and stops nothing. Only the matching ones are held: the DLQ is sifted as it is read (30 days
    of a flood of junk was held whole before the filters), from `--since` on (less a margin) by Kafka's time index.
    """
    dlq = scoped(DLQ_INTAKE, namespace).name
    done = await replayed_keys(conn, namespace)
    keys_read_at = datetime.now(UTC)
    sifter = Sifter(filters, await _keyring(conn, namespace) if PrivacySettings().configured else None, keys_read_at)
    try:
        # never before 0: Kafka's time index takes -1 and -2 for "latest" and "earliest" (review: --since 1960-01-01
        # asked for -3600000 and aiokafka refused it with a traceback)
        since_ms = None if filters.since is None else max(0, int(to_utc(filters.since).timestamp() * 1000)
                                                           - SINCE_MARGIN_MS)
        await read_into(conn, dlq, sifter.sift, since_ms)
        if sifter.unknown:  # sealed under a key written after the key store was read: read it again, then decide
            late, sifter.unknown = sifter.unknown, []
            _close(sifter.keyring)  # (a kept store: let go, so the second read goes on from it)
            sifter.keyring = None
            sifter.keyring = await _keyring(conn, namespace)
            for stored in late:
                sifter.sift(stored, last_try=True)
    finally:
        _close(sifter.keyring)
    letters = sorted(sifter.letters, key=lambda d: (d.partition, d.offset))
    return Listing(dlq, letters, done, sifter.unreadable, sifter.erased)


async def opened(conn: KafkaConnection, namespace: str, stored: list[Stored]) -> tuple[list[Stored], int, int]:
    """Records of the DLQ already read, as they arrived at intake (`Sifter.open`), with how many could not be opened
    and how many are erased, both left out (for callers holding the records: tests' accounting)."""
    if not any(is_sealed(headers) for *_, headers in stored):
        return stored, 0, 0
    sifter = Sifter(Filters(), await _keyring(conn, namespace))
    try:
        out = [o for s in stored if (o := sifter.open(s, last_try=True)) is not None]
    finally:
        _close(sifter.keyring)
    return out, sifter.unreadable, sifter.erased


async def unerased(conn: KafkaConnection, namespace: str,
                   letters: list[DeadLetter]) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """`letters` split by whether their key is still there, the key topics read again now: (kept, erased meanwhile).
    A replay asks just before it writes: the listing read the keys before the whole DLQ, and a letter of an applicant
    erased since (minutes, for a large DLQ) went back to its raw topic in clear, and intake sealed it again under a
    new key (erasure audit): the erased data readable again, its applicant told of it."""
    if not any(d.sealed_under for d in letters):
        return letters, []
    keyring = await _keyring(conn, namespace)
    kept: list[DeadLetter] = []
    gone: list[DeadLetter] = []
    try:
        for d in letters:
            try:
                if d.sealed_under is not None:
                    keyring.dek(*d.sealed_under)
            except PrivacyError:  # erased, expired, or its record gone since (compacted after its tombstone)
                gone.append(d)
            else:
                kept.append(d)
    finally:
        keyring.close()
    return kept, gone


async def _keyring(conn: KafkaConnection, namespace: str) -> Keyring:
    """A keyring holding every key the key topics hold now (PrivacyError, naming the variable, without PRIVACY_*):
    on disk as a service's (ADR 0034: a year of keys is ~15 GB in a dict), kept under `PRIVACY_STATE_DIR` if set,
    so the next listing reads only the keys written since. The caller closes it (`_close`)."""
    keyring = PrivacySettings().service_keyring(f"{namespace}-{CLIENT_ID}")
    try:
        if await keys_written(conn, namespace):  # else no key written yet: none to read
            store = KeyStore(conn, namespace, keyring, client_id=f"{CLIENT_ID}-keys")
            try:
                await store.start()
            finally:
                await store.stop()
    except BaseException:
        keyring.close()
        raise
    return keyring


def _close(keyring: Keyring | None) -> None:
    if keyring is not None:
        keyring.close()


class Sifter:
    """Keeps the dead letters matching `filters` as records are read, sealed ones opened (ADR 0015, 0026; needs
    PRIVACY_*), either layout; counts those it cannot read and those erased, and leaves both out (an erased one
    cannot be listed by its metadata or replayed)."""

    def __init__(self, filters: Filters, keyring: Keyring | None, keys_read_at: datetime | None = None) -> None:
        self.filters, self.keyring, self.keys_read_at = filters, keyring, keys_read_at
        self.letters: list[DeadLetter] = []
        self.unknown: list[Stored] = []
        """Sealed under a key the keyring has no record of, rejected too late for its key to be among those read
        (`keys_read_at`, less `KEY_WRITE_MARGIN`): written after they were read, or gone; tried again. Older ones
        are erased: the day keys past their retention, a day of a flood of junk, were held here whole (review)."""
        self.unreadable = 0
        """Without intake's `dlq.*` headers, with a reason this CLI does not know, or sealed and not openable for
        another reason than an erased key (malformed `dlq.source.*` headers, altered bytes, an unknown layout)."""
        self.erased = 0
        """Sealed under a key the key topics no longer hold (the applicant erased, or a day key past the retention),
        and matching the filters but `--source` by the clear `dlq.*` headers (`_erased`)."""

    def sift(self, stored: Stored, *, last_try: bool = False) -> None:
        """Keep `stored` if it is a dead letter matching the filters (opened if sealed), else count it or drop it."""
        opened = self.open(stored, last_try=last_try)
        if opened is None:
            return
        partition, offset, key, value, headers = opened
        h = dict(stored[4]) if is_sealed(stored[4]) else {}
        sealed_under = (wire.lenient_text(h.get(SEALED_SUBJECT_HEADER)), wire.lenient_text(h.get(SEALED_KEY_HEADER)))
        try:
            letter = dead_letter(partition, offset, key, value, headers, sealed_under if h else None,
                                 letter_digest(*stored[2:]))
        except (KeyError, ValueError):
            self.unreadable += 1
            return
        if matches(letter, self.filters):
            self.letters.append(letter)

    def open(self, stored: Stored, *, last_try: bool = False) -> Stored | None:
        """`stored` as it arrived at intake: opened if sealed (its original key, value and headers, then intake's
        `dlq.*`), as it is if not; None for one not opened, counted (unreadable or erased) or held (`unknown`)."""
        partition, offset, key, value, headers = stored
        if not is_sealed(headers):
            return stored
        keyring = self.keyring if self.keyring is not None else PrivacySettings().keyring()  # raises: not configured
        h = {k: wire.lenient_text(v) for k, v in headers if k.startswith("dlq.source.")}
        try:
            letter = open_dead_letter(keyring, key, value, headers, source_topic=h.get("dlq.source.topic", ""),
                                      partition=int(h.get("dlq.source.partition", "-1")),
                                      offset=int(h.get("dlq.source.offset", "-1")))
        except KeyUnknown:
            if last_try or not self._maybe_late(headers):
                self._erased(headers)
            else:
                self.unknown.append(stored)
            return None
        except Erased:
            self._erased(headers)
            return None
        except (PrivacyError, ValueError):
            self.unreadable += 1
            return None
        return partition, offset, letter.key, letter.value, list(letter.headers)

    def _erased(self, headers: Headers) -> None:
        """Count an erased letter if its clear context matches the filters (`context_matches`): counted whatever the
        filters, `dlq list --reason internal_error` said "2 erased" of two erased letters of another reason, an
        errand for nothing (audit). One whose context cannot be read is counted, as it may match."""
        try:
            context = DeadLetterContext.from_headers(list(headers))
        except (KeyError, ValueError):
            self.erased += 1
            return
        self.erased += context_matches(context, self.filters)

    def _maybe_late(self, headers: Headers) -> bool:
        """Whether a letter's key may have been committed after the keys were read: intake writes it in the
        transaction of the letter, whose `dlq.rejected_at` is stamped at the transaction's start."""
        if self.keys_read_at is None:
            return True
        rejected_at = dict(headers).get(Header.REJECTED_AT.value)
        try:
            at = to_utc(datetime.fromisoformat(wire.lenient_text(rejected_at or b"")))
        except ValueError:
            return True
        return at >= self.keys_read_at - KEY_WRITE_MARGIN
