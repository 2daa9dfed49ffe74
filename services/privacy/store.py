"""The key store: tails the key topics into a `Keyring` and keeps it current (erasures drop keys at once).

`start` reads both key topics to their end (committed records only, like every restore; `RestoreStalled`
once it read nothing for `RESTORE_STALL_S`, as every restore given a stall limit), or the applicants' alone for
a reader that opens nothing sealed under a dead letter's key (`applicants_only`: notify, ADR 0044);
`run` then follows them for as long as the service runs (spawn it on the Supervisor),
and forgets expired keys on the way (`Keyring.expire`, at most once a minute unless more are due).
`refresh` waits until everything committed before the call has been applied: a value
whose key is unknown is opened again after it, and only then counted as erased; a store
that does not catch up in time raises `KeysBehind` (transient, a Kafka error), never erased.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from functools import cache

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from schemas.personal import ERASED_MARK, KeyRecord
from schemas.topics import KEYS_APPLICANTS, KEYS_DEAD_LETTERS, scoped
from services.common import changelog, clients, store_faults
from services.common.logging import where
from services.common.settings import KafkaConnection
from services.common.sparse import Sparse
from services.privacy.crypto import PrivacyError
from services.privacy.key_records import RecordRefused, encoded
from services.privacy.keyring import Keyring

log = structlog.get_logger("privacy.keys")

KeyMessage = tuple[str, bytes, bytes]
"""(topic, record key, record value): what a caller sends for each new key record, in its transaction."""


@cache  # on the hot path (`key_messages`, most dossier events): `scoped` copies a TopicSpec each call
def key_topics(namespace: str) -> tuple[str, str]:
    return scoped(KEYS_APPLICANTS, namespace).name, scoped(KEYS_DEAD_LETTERS, namespace).name


def key_messages(records: list[KeyRecord], namespace: str) -> list[KeyMessage]:
    """The messages that store `records`: keys that never expire in the compacted topic, keys that expire with
    dead letters (day keys, a dead letter's applicant key) in the expiring one."""
    applicants, dead_letters = key_topics(namespace)
    return [(dead_letters if r.expires_at is not None else applicants, r.record_key, encoded(r)) for r in records]


UNREADABLE = Counter("commune_privacy_key_records_unreadable_total",
                     "Key-topic records this process's key store could not read (`keys`: applicants or deadletters, "
                     "the key topic; `error`: the PrivacyError's type: RecordRefused not a key record, e.g. a time "
                     "out of bounds, or not matching its key; Tampered damage; PrivacyError a KEK it was not given, "
                     "an erasure mark it could not read; internal_error a bug the record met): skipped, the values "
                     "under such a key wait unopened",
                     ["keys", "error"])


MARKS_UNREADABLE = Counter("commune_privacy_erasure_marks_unreadable_total",
                           "Erasure marks (`<subject>/~erased`, ADR 0015) this process's key store could not read "
                           "(damage, a subject not matching its record key, a bug): keys of that subject written "
                           "again after its erasure may still open here (ErasureMarkUnreadable)")


MARK_SUFFIX = f"/{ERASED_MARK}".encode()


def is_mark(key: bytes | None) -> bool:
    """Whether a key-topic record key is a subject's erasure mark's."""
    return key is not None and key.endswith(MARK_SUFFIX)


UNREADABLE_NOW = Gauge("commune_privacy_keys_unreadable",
                       "Keys this process's key store holds unreadable now: the last record of each could not be read "
                       "(a KEK it was not given, damage) and no readable copy came after (a rotation's re-wrapped "
                       "record makes its key readable again); the values sealed under them wait unopened")


def _unfit(kept: dict[tuple[str, int], int], tps: list[TopicPartition], begin: dict[TopicPartition, int],
           end: dict[TopicPartition, int], applicants: str) -> str | None:
    """Why a kept table's offsets cannot be gone on from (None: they can): a partition it never read, an offset past
    the topic's end (the topic made again), or records of the compacted applicants' topic deleted unread."""
    for tp in tps:
        offset = kept.get((tp.topic, tp.partition))
        if offset is None:
            return "a key-topic partition it has not read"
        if offset > end[tp]:
            return "offsets past the key topics' end (topics made again?)"
        if tp.topic == applicants and offset < begin[tp]:
            return "applicant keys deleted before they were read"
    return None


def _fencepost(record: ConsumerRecord[bytes, bytes]) -> bytes:
    key, value = record.key or b"", record.value or b""
    return hashlib.blake2b(len(key).to_bytes(4, "big") + key + value, digest_size=16).digest()


class KeysBehind(KafkaError):
    """The key store had not applied the key records committed before a `refresh` when its time was up: its
    follower lags (a slow or partly unreachable broker), which says nothing about the key. A Kafka error, so a
    caller's run ends and restarts (the store is read to its end again at start), as when the store cannot be
    read at all; never a reason to count a value as erased or unreadable."""


RESTORE_STALL_S = changelog.RESTORE_STALL_S
"""`start` raises `changelog.RestoreStalled` (a Kafka error: a service's run restarts, a command says it in one line)
once it read nothing for this long: a broker frozen mid-restore held it for as long as it was frozen (asked again every
200 ms; still reading after 180 s), a service not ready and never restarted, a command with PRIVACY_* set alike."""
EXPIRY_INTERVAL_S = 60.0
"""How often `run` forgets expired keys: they expire by the day. A call that forgot as many as it may
(`keyring.EXPIRED_AT_ONCE`: a day's dead letters' keys expire together), or took that many stale entries off the
index, is followed by another after the next fetch."""


class KeyStore:
    def __init__(self, conn: KafkaConnection, namespace: str, keyring: Keyring, *, client_id: str,
                 monotonic: Callable[[], float] = time.monotonic, applicants_only: bool = False) -> None:
        followed = 1 if applicants_only else 2  # (notify: dead letters' keys seal intake's dead letters only)
        self.keyring, self.topics = keyring, key_topics(namespace)[:followed]
        self._monotonic = monotonic
        self._expired_at: float | None = None
        """When `run` last forgot expired keys (its own clock)."""
        self._counts = (KEYS_APPLICANTS.partitions, KEYS_DEAD_LETTERS.partitions)[:followed]
        """The registry's partition counts (services check the real layout against it at start)."""
        self._consumer: AIOKafkaConsumer = clients.consumer(conn, client_id=client_id)
        self._watermarks = changelog.Watermarks(conn, client_id)
        """The key topics' high watermarks, for `refresh`."""
        self._applied: dict[TopicPartition, int] = {}
        self._progress = asyncio.Condition()
        self.unreadable = 0
        """Key records this keyring could not read (another KEK, damage): counted, skipped."""
        self.applied = 0
        """Key records applied in this run (a start from a kept table reads only those written since)."""
        self._last: dict[tuple[str, int], tuple[int, bytes]] = {}
        """Per partition, the offset and digest of the last record applied (`_fencepost`), for a kept table."""
        self._logged = Sparse()
        """`privacy.key_record_unreadable` lines: a key store given the wrong KEK logged one per key record (CLI
        audit: 74 lines for one `dlq list`; a service restoring 20 M keys would write as many)."""

    async def start(self) -> None:
        """Assign every partition of the key topics it follows and apply them to their current end: from where the
        keyring's table left off (kept across restarts, ADR 0034) if that still fits the topics, else from the
        beginning. Raises `RestoreStalled` once it read nothing for `RESTORE_STALL_S` (the broker gone)."""
        async with changelog.stall_limit(RESTORE_STALL_S, "key store restore") as progressed:
            await self._start(progressed)

    async def _start(self, progressed: Callable[[], None]) -> None:
        await self._consumer.start()
        tps = [TopicPartition(t, p) for t, n in zip(self.topics, self._counts, strict=True) for p in range(n)]
        self._consumer.assign(tps)
        end = await self._consumer.end_offsets(tps)
        kept = self.keyring.offsets()
        if kept:
            begin = await self._consumer.beginning_offsets(tps)
            problem = _unfit(kept, tps, begin, end, self.topics[0]) or await self._moved(tps, kept, begin, end)
            if problem is not None:
                log.warning("privacy.key_store_read_again", reason=problem)
                self.keyring.clear()
                kept = {}
        elif self.keyring.fenceposts():  # a kept table to read again (stale, or it skipped a record): from empty
            self.keyring.clear()
        if kept:
            for tp in tps:  # past what retention removed (day keys expired with their dead letters)
                self._consumer.seek(tp, max(kept[(tp.topic, tp.partition)], begin[tp]))
        else:
            await self._consumer.seek_to_beginning(*tps)
        started = time.monotonic()
        positions = {tp: await self._consumer.position(tp) for tp in tps}
        while any(positions[tp] < end[tp] for tp in tps):
            await self._fetch_once()
            # progress is a position moving, records or not (aborted records and markers move it, as a restore's)
            moved = {tp: self._applied[tp] for tp in tps}
            if any(moved[tp] > positions[tp] for tp in tps):
                progressed()
            positions = moved
        UNREADABLE_NOW.set(self.keyring.unreadable_keys())  # a kept table's too, when it read nothing new
        log.info("privacy.keys_read", keys=len(self.keyring), records=self.applied, from_kept=bool(kept),
                 seconds=round(time.monotonic() - started, 3))

    async def _moved(self, tps: list[TopicPartition], kept: dict[tuple[str, int], int],
                     begin: dict[TopicPartition, int], end: dict[TopicPartition, int]) -> str | None:
        """Whether a key topic is no longer the one the kept table read: the last record it applied in a partition,
        read again, differs (the topic deleted and made again, or restored, with as many records or more: review)."""
        fenceposts = self.keyring.fenceposts()
        posts = {tp: post for tp in tps if (post := fenceposts.get((tp.topic, tp.partition)))}
        for tp in tps:
            self._consumer.seek(tp, max(kept[(tp.topic, tp.partition)], begin[tp]))
        for tp, (offset, _) in posts.items():
            self._consumer.seek(tp, offset)
        while posts:
            batch = await self._consumer.getmany(*posts, timeout_ms=200, max_records=len(posts))
            for tp, records in batch.items():
                if records and tp in posts:
                    offset, digest = posts.pop(tp)
                    if records[0].offset == offset and _fencepost(records[0]) != digest:
                        return f"the last key record read in {tp.topic}[{tp.partition}] differs (topic made again?)"
            for tp in list(posts):  # gone (compacted, expired): nothing to compare, and nothing read past it
                if await self._consumer.position(tp) >= end[tp]:
                    del posts[tp]
        return None

    async def stop(self) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._watermarks.stop()

    async def run(self) -> None:
        """Follow the key topics until cancelled, forgetting expired keys at most once every `EXPIRY_INTERVAL_S`
        (without it, every day key and dead letter's key stayed in memory for as long as the service ran)."""
        while True:
            await self._fetch_once()
            self._expire_due()

    def _expire_due(self) -> None:
        now = self._monotonic()
        if self._expired_at is not None and now - self._expired_at < EXPIRY_INTERVAL_S:
            return
        self._expired_at = now
        if gone := self.keyring.expire():
            log.info("privacy.keys_expired", keys=gone)
        if self.keyring.more_due:  # a whole batch taken (gone, or stale: an erased key's): after the next fetch
            self._expired_at = None

    async def _fetch_once(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
        for tp, records in batch.items():
            self.apply_all(records)
            if records:
                self._last[(tp.topic, tp.partition)] = (records[-1].offset, _fencepost(records[-1]))
        try:  # not under `_progress`: a `refresh` whose wait timed out takes it back before it raises (audit)
            async with asyncio.timeout(RESTORE_STALL_S):  # `position` waits while a reset finds no leader
                moved = {tp: await self._consumer.position(tp) for tp in self._consumer.assignment()}
        except TimeoutError:
            raise changelog.RestoreStalled(f"key store: no position within {RESTORE_STALL_S:g} s") from None
        async with self._progress:
            self._applied.update(moved)
            # the changes staged and these offsets, after the changes they cover (the table writes nothing if
            # neither moved): a kept table starts there next time
            self.keyring.checkpoint({(tp.topic, tp.partition): offset for tp, offset in self._applied.items()},
                                    self._last)
            self._progress.notify_all()

    def apply_all(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply fetched key records in order; then export how many keys are held unreadable now."""
        for record in records:
            self._apply(record)
        self.applied += len(records)
        UNREADABLE_NOW.set(self.keyring.unreadable_keys())

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            self.keyring.apply(record.key, record.value)
        except PrivacyError as exc:
            self._skip(record, exc, type(exc).__name__, str(exc))
        except Exception as exc:  # a bug met by this record (issue 11: no input stops a worker): counted, alerted
            # (InternalErrorDeadLetters), logged by type and place, never its text (it may quote the record), skipped;
            # never refused for good: a fixed reader gets another chance at it; the store's disk failing is no bug of
            store_faults.raise_if_fault(exc)  # the record's: the process ends (skipped, its key was missing after)
            self._skip(record, exc, "internal_error", f"{type(exc).__name__} at {where(exc)}")

    def _skip(self, record: ConsumerRecord[bytes, bytes], exc: Exception, error: str, message: str) -> None:
        self.unreadable += 1
        # refused by its bytes on the compacted topic: every restart would refuse it again (ADR 0034); anything
        # else gets another chance (a KEK given since, a mark, a dead letter's key that leaves with its retention)
        self.keyring.skipped(refused=isinstance(exc, RecordRefused) and record.topic == self.topics[0])
        UNREADABLE.labels("applicants" if record.topic == self.topics[0] else "deadletters", error).inc()
        if is_mark(record.key):  # an erasure this process may not have done whole (ADR 0035): ErasureMarkUnreadable
            MARKS_UNREADABLE.inc()
        if (records := self._logged.due((record.topic, error))) is not None:
            log.error("privacy.key_record_unreadable", topic=record.topic, partition=record.partition,
                      offset=record.offset, error=message, erasure_mark=is_mark(record.key), records=records)

    async def refresh(self, timeout_s: float = 10.0) -> None:
        """Return once every key record committed before this call is applied (`run` must be running); raises
        `KeysBehind` if that takes longer than `timeout_s`. Committed reaches the high watermark, not the last stable
        offset: an event is read once its own partition has its commit marker, and its key record's partition may not
        have it yet; its key was taken for erased and the citizen not told. A transaction left open below the
        watermark (a writer killed mid-transaction, until the broker aborts it) keeps every key committed after it
        unread: `KeysBehind` too, never an applicant counted erased on a partial view."""
        tps = list(self._consumer.assignment())
        try:
            async with asyncio.timeout(timeout_s):
                end = await self._watermarks.of(tps)

                def reached() -> bool:
                    return all(self._applied.get(tp, -1) >= end[tp] for tp in tps)

                async with self._progress:
                    await self._progress.wait_for(reached)  # notified after every fetch (200 ms at most)
        except TimeoutError:
            raise KeysBehind(f"key store not caught up within {timeout_s:g} s") from None
