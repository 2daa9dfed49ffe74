"""A record written before its applicant's erasure and sealed after it is sealed already erased (ADR 0042): under
`ERASED_KEY`, no key record, every keyring answers Erased; a record written after the erasure is new data under a live
key (no broker)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from schemas.deadletter import DeadLetterContext, Reason
from schemas.dossier import Applicant
from schemas.events import Family
from schemas.personal import ERASED_KEY, ERASED_MARK, ErasureMark, KeyRecord, SealedApplicant, record_key
from services.cli.deadletters import dead_letter, redriven_headers
from services.intake.decide import Decider, allow_all
from services.intake.dedup import SeenIds
from services.intake.outcome import Accepted
from services.intake.outputs import WRITTEN_AT, written_at
from services.privacy import applicant as sealing
from services.privacy import crypto, deadletters
from services.privacy.crypto import Erased
from services.privacy.key_records import KeyUnknown
from services.privacy.keyring import Keyring
from tests.privacy.keys import KEK, NOW, keyring
from tests.samples import HDR, dumps, portal_dossier

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("key_table")]

LAN = Applicant(name="Nguyễn Thị Lan", id_number="008123456789", phone="0912345678", email="lan@example.vn")
DOSSIER = ("/communes/02269/one-stop", "TL-2512-0001")
MARK = NOW + timedelta(minutes=1)
"""The erasure's mark: asked at NOW, plus its margin for clocks."""


def _erased(ring: Keyring, subject: str, created_up_to: datetime = MARK) -> None:
    ring.apply(record_key(subject, ERASED_MARK),
               ErasureMark(subject=subject, created_up_to=created_up_to).model_dump_json().encode())


def _exactly_erased(ring: Keyring, event_id: str, sealed: SealedApplicant) -> None:
    """Erased, and not `KeyUnknown` (which makes notify wait for its key store to catch up before calling it so)."""
    with pytest.raises(Erased) as raised:
        sealing.open_field(ring, event_id, sealed, "name")
    assert not isinstance(raised.value, KeyUnknown)


@pytest.mark.parametrize("written", [NOW - timedelta(days=2), NOW, MARK])
def test_a_record_written_up_to_the_mark_is_sealed_erased_for_every_reader(written: datetime) -> None:
    """Written up to the mark (at its very instant too), the applicant is sealed under `ERASED_KEY` with no key record
    to write and none made: the worker, a reader that never saw the mark, and the worker's own key for it all say
    Erased at once; the name is in no token in clear."""
    worker = keyring()
    subject = worker.subject("cccd", LAN.id_number or "")
    _erased(worker, subject)
    sealed, records = sealing.encrypt_applicant(worker, "evt-1", LAN, DOSSIER, written)
    assert (sealed.subject, sealed.key_id, records, len(worker)) == (subject, ERASED_KEY, [], 0)
    assert sealed.name is not None and (LAN.name or "") not in sealed.model_dump_json()
    for ring in (worker, keyring()):
        _exactly_erased(ring, "evt-1", sealed)


def test_a_record_written_after_the_mark_is_new_data_under_a_live_key() -> None:
    """A microsecond past the mark, the record is the citizen's new data: a key of their own, dated after the mark,
    which a reader that read the mark takes and opens."""
    worker = keyring()
    subject = worker.subject("cccd", LAN.id_number or "")
    _erased(worker, subject)
    sealed, [record] = sealing.encrypt_applicant(worker, "evt-2", LAN, DOSSIER, MARK + timedelta(microseconds=1))
    assert sealed.key_id != ERASED_KEY and record.created_at > MARK
    reader = keyring()
    _erased(reader, subject)
    reader.apply(record.record_key, record.model_dump_json().encode())
    assert sealing.open_field(reader, "evt-2", sealed, "name") == LAN.name


@pytest.mark.parametrize("new_first", [True, False])
def test_a_record_written_before_the_erasure_never_takes_the_key_made_for_the_new_data(new_first: bool) -> None:
    """Records before and after the erasure read together, in either order (another worker's record, or the same
    partition's): the late one stays erased, the new one gets a live key, and neither takes the other's."""
    worker = keyring()
    subject = worker.subject("cccd", LAN.id_number or "")
    _erased(worker, subject)
    steps = [("evt-new", MARK + timedelta(seconds=1)), ("evt-old", NOW - timedelta(seconds=1))]
    sealed = {event_id: sealing.encrypt_applicant(worker, event_id, LAN, DOSSIER, when)[0]
              for event_id, when in (steps if new_first else reversed(steps))}
    assert sealed["evt-old"].key_id == ERASED_KEY and sealed["evt-new"].key_id in worker.key_ids(subject)
    _exactly_erased(worker, "evt-old", sealed["evt-old"])
    assert sealing.open_field(worker, "evt-new", sealed["evt-new"], "name") == LAN.name


def test_without_a_mark_when_a_record_was_written_changes_nothing() -> None:
    """A subject never erased: a record of any time is sealed under its one key, as before."""
    worker = keyring()
    first, [record] = sealing.encrypt_applicant(worker, "evt-1", LAN, DOSSIER, NOW - timedelta(days=2))
    again, none = sealing.encrypt_applicant(worker, "evt-2", LAN, DOSSIER, NOW)
    assert first.key_id == again.key_id == record.key_id and none == [record]  # pending: its record goes again


def test_a_dead_letter_of_a_record_written_before_the_erasure_stays_unreadable() -> None:
    """Rejected, the record is a dead letter sealed already erased (no key expiring with it): `dlq list` says erased,
    and `dlq replay` cannot send it back as new data."""
    worker = keyring()
    subject = worker.subject("cccd", LAN.id_number or "")
    _erased(worker, subject)
    raw = dumps(portal_dossier("TL-1", SoGiayToChuHoSo=LAN.id_number))
    letter = deadletters.seal_dead_letter(worker, None, raw, [], source_topic="commune.raw.dossier", partition=0,
                                          offset=7, rejected_on=NOW.date(), retention_days=30, written_at=NOW)
    assert letter.keys == [] and dict(letter.headers)["dlq.sealed.key"] == ERASED_KEY.encode()
    with pytest.raises(Erased):
        deadletters.open_dead_letter(keyring(), None, letter.value, letter.headers,
                                     source_topic="commune.raw.dossier", partition=0, offset=7)


def test_a_key_record_written_under_the_reserved_id_opens_nothing() -> None:
    """`ERASED_KEY` names no key, even if a record under that id turns up on the key topic: still Erased."""
    worker = keyring()
    subject = worker.subject("cccd", LAN.id_number or "")
    _erased(worker, subject, NOW - timedelta(days=1))
    sealed, _ = sealing.encrypt_applicant(worker, "evt-1", LAN, DOSSIER, NOW - timedelta(days=2))
    dek = crypto.new_key()
    forged = KeyRecord(subject=subject, key_id=ERASED_KEY, kek_id="kek-1", created_at=NOW,
                       wrapped=crypto.wrap(KEK, dek, subject, ERASED_KEY))
    reader = keyring()
    reader.apply(forged.record_key, forged.model_dump_json().encode())
    _exactly_erased(reader, "evt-1", sealed)


def test_intake_seals_a_late_record_of_an_erased_applicant_erased() -> None:
    """The decision: the record's time reaches the keyring, and the event goes out with nothing to write."""
    worker = keyring()
    _erased(worker, worker.subject("cccd", "008123456789"))
    decide = Decider(Family.DOSSIER, "t.commune.raw.dossier", 0, SeenIds(), allow_all, 1 << 20,
                     "2026-12-01T08:02:00+00:00", keyring=worker).decide
    late = decide(dumps(portal_dossier("TL-1")), HDR, 3, NOW)
    new = decide(dumps(portal_dossier("TL-2")), HDR, 4, MARK + timedelta(seconds=1))
    assert isinstance(late, Accepted) and isinstance(new, Accepted)
    keys = [e.event.data.applicant.key_id for e in (late, new)]  # type: ignore[attr-defined]
    assert keys[0] == ERASED_KEY and keys[1] != ERASED_KEY and (len(late.keys), len(new.keys)) == (0, 1)


@pytest.mark.parametrize(("timestamp", "headers", "read", "written"), [
    (1_000, [], 5_000, 1_000),  # the broker's append time
    (9_000, [], 5_000, 5_000),  # a producer's CreateTime in the future: when it was read
    (3_000, [(WRITTEN_AT, b"2000")], 5_000, 2_000),  # a record intake moved: the original's
    (3_000, [(WRITTEN_AT, b"4000")], 5_000, 3_000),  # a header never makes it later
    (3_000, [(WRITTEN_AT, b"-1"), (WRITTEN_AT, None), (WRITTEN_AT, b"x")], 5_000, 3_000),  # not a time: ignored
])
def test_when_a_raw_record_was_written(timestamp: int, headers: list[tuple[str, bytes | None]], read: int,
                                       written: int) -> None:
    """Its timestamp, an earlier time carried by a move, never after it was read."""
    assert written_at(timestamp, headers, read) == written


def test_a_dead_letter_of_no_identifier_replayed_after_the_erasure_is_sealed_erased() -> None:
    """An applicant with a name and address only is sealed under the dossier's subject, but a dead letter of theirs
    under the day's key, which erasing that subject does not reach: `dlq replay` after the erasure opened it and wrote
    it back with a new append time, and intake sealed it under a new live key, name and address readable on the
    canonical topic (review). The replay now carries when the original was written at the latest, its rejection."""
    rec = portal_dossier("TL-9", ChuHoSo="Lò Thị Mai", DiaChiChuHoSo="Bản Nà Tàng, Mường Khương")
    for name in ("SoGiayToChuHoSo", "SoDienThoaiChuHoSo"):
        rec.pop(name)
    raw, before = dumps(rec), NOW - timedelta(hours=1)
    letter = deadletters.seal_dead_letter(keyring(), None, raw, [], source_topic="commune.raw.dossier", partition=0,
                                          offset=7, rejected_on=before.date(), retention_days=30, written_at=before)
    decide = Decider(Family.DOSSIER, "commune.raw.dossier", 0, SeenIds(), allow_all, 1 << 20, NOW.isoformat(),
                     keyring=keyring()).decide
    first = decide(raw, HDR, 1, before)
    assert isinstance(first, Accepted) and isinstance(first.event.data.applicant, SealedApplicant)
    subject = first.event.data.applicant.subject
    assert subject.startswith("d-") and dict(letter.headers)["dlq.sealed.subject"].startswith(b"dlq:")

    ring = keyring()
    _erased(ring, subject)
    for r in letter.keys:
        ring.apply(r.record_key, r.model_dump_json().encode())
    opened = deadletters.open_dead_letter(ring, None, letter.value, letter.headers,
                                          source_topic="commune.raw.dossier", partition=0, offset=7)
    context = DeadLetterContext(reason=Reason.MISSING_COMMUNE_HEADER, field="commune-code", message="m",
                                source_topic="commune.raw.dossier", source_partition=0, source_offset=7,
                                rejected_at=before.isoformat())
    replayed = redriven_headers(dead_letter(0, 3, None, opened.value, [*opened.headers, *context.headers()]),
                                {"commune-code": "02269"})
    an_hour_after = int((NOW + timedelta(hours=1)).timestamp() * 1000)
    at = written_at(an_hour_after, replayed, an_hour_after)
    assert at == int(before.timestamp() * 1000), (at, WRITTEN_AT)
    again = Decider(Family.DOSSIER, "commune.raw.dossier", 0, SeenIds(), allow_all, 1 << 20, NOW.isoformat(),
                    keyring=ring).decide(opened.value, HDR, 9, datetime.fromtimestamp(at / 1000, before.tzinfo))
    assert isinstance(again, Accepted) and isinstance(again.event.data.applicant, SealedApplicant)
    assert again.event.data.applicant.key_id == ERASED_KEY
    _exactly_erased(ring, again.event.id, again.event.data.applicant)
