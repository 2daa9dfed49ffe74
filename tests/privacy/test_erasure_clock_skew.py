"""An erasure holds whatever the clocks of the eraser's and intake's hosts say (ADR 0043): its mark is dated by the
broker's clock, as raw records' times and the keys made for them are, and a replayed dead letter carries its
original's broker time. The time audit's three cases, with a host's clock minutes off the broker's (no broker: the
erasure's Kafka in memory, stamping the audit topic's records as a LogAppendTime topic does)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from structlog.testing import capture_logs

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.dossier import DossierStatusChanged
from schemas.events import Family
from schemas.personal import ERASED_KEY, ERASED_MARK, ErasureAudit, ErasureMark, KeyRecord, SealedApplicant, record_key
from schemas.topics import KEYS_APPLICANTS, RAW
from services.cli.deadletters import dead_letter, redriven_headers
from services.common.partitioner import partition_for
from services.intake.decide import Decider, allow_all
from services.intake.dedup import SeenByPartition, SeenIds
from services.intake.outcome import Accepted
from services.intake.outputs import TransactionOutputs, written_at
from services.intake.settings import IntakeSettings
from services.intake.validate import Topics, Validation
from services.privacy import applicant as sealing
from services.privacy import erase, required_topics
from services.privacy.crypto import Erased
from services.privacy.erasure_time import erasure_mark
from services.privacy.intake import IntakePrivacy
from services.privacy.keyring import Keyring
from tests.intake.fakes import Batch
from tests.intake.fakes import Producer as IntakeProducer
from tests.privacy.fakes import Broker, Producer
from tests.privacy.keys import NOW, keyring
from tests.samples import HDR, dumps, portal_dossier

pytestmark = pytest.mark.unit

T0 = NOW
"""When the erasure happens, by the broker's clock (the right one)."""
CCCD = "008123456789"
"""The applicant of `tests.samples.portal_dossier`."""
OFF = [timedelta(seconds=91), timedelta(minutes=5), timedelta(hours=2)]
"""How far a host's clock is from the broker's: the audit's first failing figure, and well past it."""


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def _erase(monkeypatch: pytest.MonkeyPatch, subject: str, eraser_now: datetime) -> tuple[bytes, bytes]:
    """Erase `subject` (one live key) at `T0` by the broker, on a host whose clock says `eraser_now`: the mark's
    record key and value as committed."""
    broker = Broker({"k1"}, clock=lambda: T0)
    broker.install(monkeypatch)
    await erase.erase_subject(None, "", subject, requested_by="operator", now=eraser_now)  # type: ignore[arg-type]
    [mark] = [(k, v) for tx in broker.committed for _, v, k in tx if k == record_key(subject, ERASED_MARK) and v]
    return mark


def _decide(ring: Keyring, code: str, written: datetime, offset: int = 1) -> Accepted:
    decision = Decider(Family.DOSSIER, "commune.raw.dossier", 0, SeenIds(), allow_all, 1 << 20, T0.isoformat(),
                       keyring=ring).decide(dumps(portal_dossier(code)), HDR, offset, written)
    assert isinstance(decision, Accepted) and isinstance(decision.event.data.applicant, SealedApplicant)
    return decision


def _name(ring: Keyring, decision: Accepted) -> str | None:
    """The applicant's name as `ring` opens it, or "[erased]"."""
    sealed = decision.event.data.applicant
    assert isinstance(sealed, SealedApplicant)
    try:
        return sealing.open_field(ring, decision.event.id, sealed, "name")
    except Erased:
        return "[erased]"


@pytest.mark.usefixtures("key_table")
@pytest.mark.parametrize("behind", OFF)
async def test_a_dossier_written_before_the_erasure_of_a_slow_eraser_stays_erased(
        behind: timedelta, monkeypatch: pytest.MonkeyPatch) -> None:
    """A: the eraser's clock `behind` the broker's (an operator's laptop). A dossier appended 30 s before the erasure
    and read after it is sealed erased; one appended past the mark's minute is new data that opens. Before, the mark
    was the eraser's clock and a minute: from 91 s behind, the first went under a new live key, its name readable."""
    intake = keyring(clock=lambda: T0 + timedelta(minutes=10))
    subject = intake.subject("cccd", CCCD)
    mark = await _erase(monkeypatch, subject, T0 - behind)
    intake.apply(*mark)
    late = _decide(intake, "TL-1", T0 - timedelta(seconds=30))
    new = _decide(intake, "TL-2", T0 + erase.CLOCK_MARGIN + timedelta(seconds=1), 2)
    assert [d.event.data.applicant.key_id == ERASED_KEY for d in (late, new)] == [True, False]  # type: ignore[union-attr]
    reader = keyring(clock=lambda: T0 + timedelta(minutes=11))
    reader.apply(*mark)
    for record in (*late.keys, *new.keys):
        reader.apply(record.record_key, record.model_dump_json().encode())
    assert (_name(reader, late), _name(reader, new)) == ("[erased]", "Nguyễn Thị Lan")


@pytest.mark.parametrize("ahead", OFF)
def test_an_eraser_ahead_of_the_broker_erases_up_to_the_brokers_time(ahead: timedelta) -> None:
    """The mark is the broker's time and the margin, whatever the eraser's clock says: one `ahead` erased the
    subject's new data for as long (review: 2 h fast, a dossier sent 30 min after the erasure was sealed erased)."""
    audit = ErasureAudit(erasure_id="e", subject="a-s", requested_by="op", requested_at=T0 + ahead, keys_destroyed=0)
    stamped = RecordMetadata("commune.privacy.audit", 0, TopicPartition("commune.privacy.audit", 0), 0, _ms(T0), 1, 0)
    mark = erasure_mark(audit, stamped, erase.CLOCK_MARGIN)
    assert mark.created_up_to == T0 + erase.CLOCK_MARGIN
    worker = keyring()
    worker.apply(record_key(mark.subject, ERASED_MARK), mark.model_dump_json().encode())
    key_id, _, _ = worker.key_for(mark.subject, written_at=T0 + timedelta(minutes=30))
    assert key_id != ERASED_KEY  # new data, sealed under a live key


def test_an_audit_topic_still_at_create_time_dates_the_mark_by_the_eraser_and_says_so() -> None:
    """Before `topics create` has given the audit topic LogAppendTime, the broker stamps nothing: the mark is dated by
    the eraser's clock, as before this change, and a warning names the fix."""
    audit = ErasureAudit(erasure_id="e", subject="a-s", requested_by="op", requested_at=T0 - timedelta(minutes=5),
                         keys_destroyed=0)
    unstamped = RecordMetadata("commune.privacy.audit", 0, TopicPartition("commune.privacy.audit", 0), 0,
                               _ms(T0 - timedelta(minutes=5)), 0, 0)
    with capture_logs() as logs:
        mark = erasure_mark(audit, unstamped, erase.CLOCK_MARGIN)
    assert mark.created_up_to == T0 - timedelta(minutes=4)
    assert [e["event"] for e in logs] == ["erase.mark_by_local_clock"] and "topics create" in logs[0]["fix"]


@pytest.mark.parametrize("ahead", OFF)
async def test_a_dead_letter_rejected_before_the_erasure_by_a_fast_intake_is_replayed_erased(ahead: timedelta) -> None:
    """B: intake's clock `ahead` of the broker's. A record appended 30 s before the erasure is dead-lettered;
    `dlq replay` after the erasure dates the copy by the original's broker time (`dlq.source.written-at`), so intake
    seals it erased. Before, the replay carried the rejection time by intake's clock: 91 s fast, it was new data."""
    topics = Topics.of("")
    raw_topic = RAW[Family.DOSSIER].name
    partitions = {**{t: RAW[f].partitions for t, f in topics.family_of.items()},
                  **{t: 6 for t in topics.canonical.values()}}
    validation = Validation(topics, partitions, SeenByPartition(), IntakeSettings())
    written = T0 - timedelta(seconds=30)
    validation.now_ms, validation.rejected_at = _ms(written + ahead), (written + ahead).isoformat()  # intake's clock
    value = dumps(portal_dossier("TL-3"))
    original = ConsumerRecord(raw_topic, 0, 7, _ms(written), 1, b"02269", value, None, 5, len(value), [])  # no header
    out = TransactionOutputs(cast(AIOKafkaProducer, IntakeProducer()), partitions)
    await validation.partition(TopicPartition(raw_topic, 0), [original], out)
    [(_, letter_value, letter_key, headers, _)] = [o for o in out.others if o[0] == topics.dlq]
    letter = dead_letter(0, 3, letter_key, letter_value, headers)
    assert letter.context.reason.value == "missing_commune_header"
    replayed_at = _ms(T0 + timedelta(hours=1))  # the copy's own append time
    at = written_at(replayed_at, redriven_headers(letter, {"commune-code": "02269"}), replayed_at)
    ring = keyring()
    subject = ring.subject("cccd", CCCD)
    ring.apply(record_key(subject, ERASED_MARK),
               ErasureMark(subject=subject, created_up_to=T0 + erase.CLOCK_MARGIN).model_dump_json().encode())
    again = _decide(ring, "TL-3", datetime.fromtimestamp(at / 1000, T0.tzinfo), 9)
    assert (at, again.event.data.applicant.key_id) == (_ms(written), ERASED_KEY)  # type: ignore[union-attr]


@pytest.mark.parametrize("intakes", [None, b"1796111970000"])
def test_a_replay_takes_the_originals_time_from_intakes_own_headers_only(intakes: bytes | None) -> None:
    """A `dlq.source.written-at` the original record carried (a producer's, far in the future) never dates the replay:
    intake's own, in its block of `dlq.*` headers, does; a letter without one (written before this change) is dated
    by its rejection, as before."""
    context = DeadLetterContext(reason=Reason.MISSING_FIELD, field="x", message="m", source_topic="commune.raw.dossier",
                                source_partition=0, source_offset=7, rejected_at=T0.isoformat())
    block = context.headers()
    if intakes is not None:
        block.append(("dlq.source.written-at", intakes))
    forged = [("dlq.source.written-at", b"9999999999999")]
    letter = dead_letter(0, 3, None, dumps(portal_dossier("TL-6")), [*HDR, *forged, *block])
    replayed = [v for k, v in redriven_headers(letter, {}) if k == "intake.written-at"]
    assert replayed == [intakes or str(_ms(T0)).encode()]


class _Privacy:
    """What intake's validation asks of its privacy shell (`IntakePrivacy`) for an accepted record."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def key_messages(self, records: list[KeyRecord]) -> list[tuple[str, bytes, bytes]]:
        return [(KEYS_APPLICANTS.name, r.record_key, r.model_dump_json().encode()) for r in records]


@pytest.mark.parametrize("behind", OFF)
async def test_a_dossier_written_after_the_mark_read_at_once_by_a_slow_intake_is_new_data(behind: timedelta) -> None:
    """Intake's clock `behind` the broker's: a dossier appended 2 minutes after an erasure and read at once is the
    citizen's new data, under a live key. Before, intake capped the broker's append time at its own clock (for
    CreateTime topics): the dossier counted as written before the mark, and was sealed erased."""
    topics = Topics.of("")
    raw_topic = RAW[Family.DOSSIER].name
    partitions = {**{t: RAW[f].partitions for t, f in topics.family_of.items()},
                  **{t: 6 for t in topics.canonical.values()}, KEYS_APPLICANTS.name: KEYS_APPLICANTS.partitions}
    home = partition_for(b"02269", partitions[raw_topic])
    ring = keyring(clock=lambda: T0 + timedelta(minutes=2) - behind)
    subject = ring.subject("cccd", CCCD)
    ring.apply(record_key(subject, ERASED_MARK),
               ErasureMark(subject=subject, created_up_to=T0 + erase.CLOCK_MARGIN).model_dump_json().encode())
    validation = Validation(topics, partitions, SeenByPartition(), IntakeSettings(),
                            cast(IntakePrivacy, _Privacy(ring)))
    appended = T0 + timedelta(minutes=2)
    validation.now_ms, validation.rejected_at = _ms(appended - behind), (appended - behind).isoformat()  # its clock
    value = dumps(portal_dossier("TL-4"))
    record = ConsumerRecord(raw_topic, home, 4, _ms(appended), 1, b"02269", value, None, 5, len(value), HDR)
    out = TransactionOutputs(cast(AIOKafkaProducer, IntakeProducer()), partitions)
    await validation.partition(TopicPartition(raw_topic, home), [record], out)
    [event] = [wire.decode(list(h), v) for topic, _, batch in out.batches if topic == topics.canonical[Family.DOSSIER]
               for _, v, h in cast(Batch, batch).records]
    assert isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, SealedApplicant)
    assert event.data.applicant.key_id in ring.key_ids(subject)


@pytest.mark.usefixtures("key_table")
@pytest.mark.parametrize("ahead", [timedelta(seconds=71), *OFF[1:]])
async def test_a_key_made_before_the_erasure_by_a_fast_intake_is_erased_in_every_later_key_store(
        ahead: timedelta, monkeypatch: pytest.MonkeyPatch) -> None:
    """C: intake's clock `ahead` makes a key for a dossier appended 10 s before the erasure; its record is written
    again after the tombstone. A key store reading the compacted topic (the mark, that copy) refuses it: the key is
    dated by the dossier's broker time, under the mark. Before, it was dated by intake's clock, after the mark, and the
    pre-erasure dossier opened again, for good (audit: from 71 s fast)."""
    worker = keyring(clock=lambda: T0 - timedelta(seconds=10) + ahead)
    made = _decide(worker, "TL-5", T0 - timedelta(seconds=10), 5)
    [record] = made.keys
    mark = await _erase(monkeypatch, record.subject, T0)
    later = keyring(clock=lambda: T0 + timedelta(days=2))
    later.apply(*mark)
    later.apply(record.record_key, record.model_dump_json().encode())  # the late copy, its tombstone compacted away
    assert (_name(later, made), record.created_at <= T0) == ("[erased]", True)


class _KeyLog:
    """The applicants' key topic as the erasure reads it: records before it, what each transaction committed, and a
    worker's late copy written just after the erasure's transaction (it had not read the tombstone yet)."""

    def __init__(self, broker: Broker, before: list[tuple[bytes, bytes | None]], late: tuple[bytes, bytes]) -> None:
        self.broker, self.before, self.late = broker, before, late

    def records(self, topic: str) -> Iterator[tuple[bytes | None, bytes | None]]:
        if topic != KEYS_APPLICANTS.name:
            return
        yield from self.before
        for n, tx in enumerate(self.broker.committed):
            yield from ((k, v) for t, v, k in tx if t == topic)
            if n == 0:
                yield self.late

    async def read_to_end(self, _: Any, topic: str, __: Any, apply: Any, **___: Any) -> None:
        for key, value in list(self.records(topic)):
            apply(0, SimpleNamespace(key=key, value=value))


async def test_the_clean_up_tombstones_a_late_copy_of_an_erased_key_however_it_is_dated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """C: a key the erasure tombstoned, whose record a worker wrote again after the tombstone, dated 5 minutes after
    the mark (by a fast clock, as intake dated keys before this change): the clean-up tombstones the copy again, as
    it is a copy of a key it erased (ids are never made twice). Before, a copy dated after the mark was taken for the
    subject's new key and left, the last record of that key once the topic was compacted."""
    subject = "a-subject"
    stale = KeyRecord(subject=subject, key_id="k1", kek_id="kek-1", wrapped="AAAA",
                      created_at=T0 + timedelta(minutes=5))
    key = record_key(subject, "k1")
    broker = Broker(set(), clock=lambda: T0)
    log = _KeyLog(broker, [(key, stale.model_dump_json().encode())], (key, stale.model_dump_json().encode()))

    async def require(*_: Any) -> None: ...

    monkeypatch.setattr(required_topics, "require", require)
    monkeypatch.setattr(erase, "PASS_INTERVAL_S", 0.0)
    monkeypatch.setattr(erase, "read_to_end", log.read_to_end)
    monkeypatch.setattr(erase.clients, "transactional_producer", lambda *_a, **_k: Producer(broker))
    audit = await erase.erase_subject(None, "", subject, requested_by="operator", now=T0)  # type: ignore[arg-type]
    assert audit.keys_destroyed == 1
    assert [[(t, v, k) for t, v, k in tx if v is None] for tx in broker.committed] == [
        [(KEYS_APPLICANTS.name, None, key)], [(KEYS_APPLICANTS.name, None, key)]]
