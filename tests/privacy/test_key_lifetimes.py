"""How many keys the keyring makes and how long they live: one per dossier without an identifier, a dead letter's own
key expiring with it, expired keys forgotten by the key store (pure, no broker)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
import structlog.testing
from aiokafka import ConsumerRecord

from schemas.dossier import DossierStatusChanged
from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord, record_key
from services.common.settings import KafkaConnection
from services.privacy import applicant as sealing
from services.privacy import crypto, deadletters
from services.privacy.crypto import Erased
from services.privacy.key_records import encoded
from services.privacy.keyring import Keyring
from services.privacy.store import UNREADABLE, UNREADABLE_NOW, KeyStore, key_messages
from tests.privacy.keys import KEK, NOW, PEPPER, keyring
from tests.samples import canonical_dossier

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("key_table")]
"""Each test twice: keys in memory, and on disk with two subjects in memory (ADR 0034)."""

REJECTED_ON = date(2026, 12, 1)
LETTER_EXPIRY = datetime(2027, 1, 1, tzinfo=UTC)
"""A dead letter of `REJECTED_ON` with 30 days' retention: its day key's expiry (the day after, plus 30 days)."""
NEW_CCCD = "036199004321"


def _event(event_id: str, code: str, applicant: dict[str, str], status: int = 2) -> DossierStatusChanged:
    return DossierStatusChanged.model_validate(canonical_dossier(event_id, dossier_code=code, status=status,
                                                                 applicant=applicant))


def _read_back(ring: Keyring, records: list[KeyRecord]) -> None:
    """What the key store does with the records a transaction wrote."""
    for record in records:
        ring.apply(record.record_key, encoded(record))


def _dead_letter(ring: Keyring, cccd: str, offset: int = 1) -> deadletters.SealedDeadLetter:
    raw = orjson.dumps({"MaHoSo": "TL-BAD", "SoGiayToChuHoSo": cccd, "NgayHenTra": "not a date"})
    return deadletters.seal_dead_letter(ring, b"02269", raw, [], source_topic="commune.raw.dossier", partition=0,
                                        offset=offset, rejected_on=REJECTED_ON, retention_days=30)


def _open_letter(ring: Keyring, letter: deadletters.SealedDeadLetter, offset: int = 1) -> bytes | None:
    return deadletters.open_dead_letter(ring, letter.key, letter.value, letter.headers,
                                        source_topic="commune.raw.dossier", partition=0, offset=offset).value


@pytest.mark.parametrize("applicant", [{"name": "Lò Thị Sen", "address": "Bản Nà Tàng"},
                                       {"name": "Lò Thị Sen", "phone": "-", "zalo_user_id": "N/A"}])
def test_every_event_of_a_dossier_without_an_identifier_shares_one_key(applicant: dict[str, str]) -> None:
    """40 status events of one dossier whose applicant gave no identifier (or placeholders only): one subject, one
    permanent key, written with the first event only (before: a random subject and a new key per event)."""
    ring = keyring()
    subjects, written = set(), []
    for i in range(40):
        event, records = sealing.seal_event(ring, _event(f"evt-{i}", "TL-2512-0042", applicant, 2 + (i % 3) * 2))
        _read_back(ring, records)
        assert isinstance(event.data.applicant, sealing.SealedApplicant)
        subjects.add(event.data.applicant.subject)
        written += records
        assert sealing.open_field(ring, event.id, event.data.applicant, "name") == "Lò Thị Sen"
    (subject,) = subjects
    assert crypto.identifies("subject", subject) and subject.startswith("d-")
    assert len(ring) == 1 and len(written) == 1 and written[0].expires_at is None


def test_two_dossiers_without_an_identifier_get_two_subjects() -> None:
    """Another dossier code, or the same code from another source, is another dossier: its own subject, so erasing
    one applicant's never shreds a stranger's; the subject is the pepper's (another pepper, another subject)."""
    ring, applicant = keyring(), {"name": "Lò Thị Sen"}
    one = sealing.seal_event(ring, _event("e1", "TL-2512-0001", applicant))[0]
    two = sealing.seal_event(ring, _event("e2", "TL-2512-0002", applicant))[0]
    elsewhere = _event("e3", "TL-2512-0001", applicant).model_copy(update={"source": "/provinces/20/dossiers"})
    three = sealing.seal_event(ring, elsewhere)[0]
    subjects = {e.data.applicant.subject for e in (one, two, three)}  # type: ignore[union-attr]
    assert len(subjects) == 3 and len(ring) == 3
    other_pepper = Keyring({"kek-1": bytes(32)}, "kek-1", b"another-pepper-0123")
    assert other_pepper.dossier_subject(one.source, "TL-2512-0001") not in subjects
    assert ring.dossier_subject(one.source, "TL-2512-0001") == one.data.applicant.subject  # type: ignore[union-attr]


def test_a_dead_letter_naming_a_new_cccd_gets_a_key_that_expires_with_it() -> None:
    """A rejected record naming a CCCD never seen is sealed under a key of that applicant that expires when the
    dead letter leaves its topic, and goes to the expiring key topic (before: a permanent key, kept for ever)."""
    ring = keyring()
    letter = _dead_letter(ring, NEW_CCCD)
    subject = crypto.cccd_subject(PEPPER, NEW_CCCD)
    assert dict(letter.headers)["dlq.sealed.subject"] == subject.encode()
    (record,) = letter.keys
    assert record.subject == subject and record.expires_at == LETTER_EXPIRY
    assert [topic for topic, _, _ in key_messages(letter.keys, "ns")] == ["ns.commune.keys.deadletters"]
    _read_back(ring, letter.keys)
    again = _dead_letter(ring, NEW_CCCD, offset=2)  # another letter of theirs, expiring no later: the same key
    assert dict(again.headers)["dlq.sealed.key"] == record.key_id.encode() and again.keys == []


def test_a_valid_event_after_it_gets_a_permanent_key_which_later_dead_letters_use() -> None:
    """The applicant's first valid event is sealed under a new permanent key, never the dead letter's expiring one
    (its canonical data would become unreadable with the letter); their next dead letter uses the permanent key."""
    now = [NOW]
    ring = keyring(lambda: now[0])
    letter = _dead_letter(ring, NEW_CCCD)
    _read_back(ring, letter.keys)
    event, records = sealing.seal_event(ring, _event("evt-1", "TL-2512-0007", {"name": "Sen", "id_number": NEW_CCCD}))
    (permanent,) = records
    assert permanent.expires_at is None and permanent.key_id != letter.keys[0].key_id
    assert [topic for topic, _, _ in key_messages(records, "ns")] == ["ns.commune.keys.applicants"]
    _read_back(ring, records)
    assert sealing.seal_event(ring, _event("evt-2", "TL-2512-0007", {"name": "Sen", "id_number": NEW_CCCD}))[1] == []
    later = _dead_letter(ring, NEW_CCCD, offset=3)
    assert dict(later.headers)["dlq.sealed.key"] == permanent.key_id.encode() and later.keys == []

    now[0] = LETTER_EXPIRY  # the first letter has left its topic: its key goes, the applicant's stays
    assert ring.expire() == 1 and ring.key_ids(permanent.subject) == [permanent.key_id]
    assert ring.expire() == 0 and not ring._erased, "an expired key leaves nothing behind (review: 250 B each)"

    sealed = event.data.applicant
    assert isinstance(sealed, sealing.SealedApplicant)
    assert sealing.open_field(ring, event.id, sealed, "name") == "Sen"
    with pytest.raises(Erased):
        _open_letter(ring, letter)


def test_erasing_the_subject_shreds_its_dead_letter_under_an_expiring_key_and_its_events() -> None:
    """The erasure's mark (on the compacted key topic) erases every key of the subject made up to it, the dead
    letter's expiring key (on the other key topic) too, whichever a keyring reads first."""
    maker = keyring()
    letter = _dead_letter(maker, NEW_CCCD)
    event, records = sealing.seal_event(maker, _event("evt-1", "TL-2512-0007", {"name": "Sen", "id_number": NEW_CCCD}))
    subject = crypto.cccd_subject(PEPPER, NEW_CCCD)
    assert letter.keys[0].expires_at == LETTER_EXPIRY and records[0].expires_at is None
    mark = (record_key(subject, ERASED_MARK),
            ErasureMark(subject=subject, created_up_to=NOW + timedelta(minutes=1)).model_dump_json().encode())
    first_keys, first_mark = keyring(), keyring()
    _read_back(first_keys, letter.keys + records)
    assert _open_letter(first_keys, letter) is not None
    first_keys.apply(*mark)
    first_mark.apply(*mark)
    _read_back(first_mark, letter.keys + records)
    sealed = event.data.applicant
    assert isinstance(sealed, sealing.SealedApplicant)
    for ring in (first_keys, first_mark):
        with pytest.raises(Erased):
            _open_letter(ring, letter)
        with pytest.raises(Erased):
            sealing.open_field(ring, event.id, sealed, "name")


async def test_the_key_store_forgets_expired_keys_as_it_follows_at_most_once_a_minute() -> None:
    """`KeyStore.run` calls `Keyring.expire` after its first fetch, then no more than once a minute by its own
    clock: a day key past its expiry leaves memory (before: nothing called `expire`, they stayed for ever)."""
    now, ticks = [NOW], [0.0]
    ring = keyring(lambda: now[0])
    ring.key_for("dlq:2026-12-01", NOW + timedelta(days=1))
    calls: list[float] = []
    expire = ring.expire

    def counted() -> int:
        calls.append(ticks[0])
        return expire()

    ring.expire = counted  # type: ignore[method-assign]
    store = KeyStore(KafkaConnection(bootstrap="127.0.0.1:1"), "ns", ring, client_id="tests-expiry",
                     monotonic=lambda: ticks[0])

    class Enough(Exception):
        pass

    async def fetch_once() -> None:  # each fetch takes 10 s; the day key expires during the second
        ticks[0] += 10
        if ticks[0] == 20:
            now[0] = NOW + timedelta(days=2)
        if ticks[0] > 130:
            raise Enough

    store._fetch_once = fetch_once  # type: ignore[method-assign]
    with pytest.raises(Enough):
        await store.run()
    assert calls == [10, 70, 130] and len(ring) == 0


def _day_of_letters(monkeypatch: pytest.MonkeyPatch) -> tuple[Keyring, list[datetime]]:
    """A keyring of 7 dead letters' keys expiring at one instant, now past it; `EXPIRED_AT_ONCE` is 3."""
    from services.privacy import keyring as keyrings

    monkeypatch.setattr(keyrings, "EXPIRED_AT_ONCE", 3)
    now = [NOW + timedelta(days=2)]
    ring = keyring(lambda: now[0])
    for i in range(7):
        _read_back(ring, ring.key_for(f"dlq:letter-{i}", NOW + timedelta(days=1))[2])
    return ring, now


async def _expiries(ring: Keyring) -> list[tuple[float, int]]:
    """When `KeyStore.run` (its fetches taking 10 s each, for 100 s) called `expire`, and what each call forgot."""
    ticks, calls = [0.0], list[tuple[float, int]]()
    expire = ring.expire

    def counted() -> int:
        calls.append((ticks[0], gone := expire()))
        return gone

    ring.expire = counted  # type: ignore[method-assign]
    store = KeyStore(KafkaConnection(bootstrap="127.0.0.1:1"), "ns", ring, client_id="tests-expiry-batches",
                     monotonic=lambda: ticks[0])

    class Enough(Exception):
        pass

    async def fetch_once() -> None:
        ticks[0] += 10
        if ticks[0] > 100:
            raise Enough

    store._fetch_once = fetch_once  # type: ignore[method-assign]
    with pytest.raises(Enough):
        await store.run()
    return calls


async def test_the_key_store_forgets_a_day_of_expired_keys_a_batch_after_each_fetch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A day's dead letters' keys expire at one instant: `expire` forgets `EXPIRED_AT_ONCE` of them a call (3 here),
    and `KeyStore.run` calls it again after its next fetch while a call forgot that many, then once a minute again
    (before: every due key in one call, the event loop held for all of them)."""
    ring, _ = _day_of_letters(monkeypatch)
    assert await _expiries(ring) == [(10, 3), (20, 3), (30, 1), (90, 0)] and len(ring) == 0


async def test_a_batch_of_stale_expiry_entries_alone_does_not_hold_the_next_expiry_for_a_minute(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The expiry index may hold stale entries (`KeyTable.due`: a key gone since, as the memory table keeps an erased
    key's): a call of `expire` that took a whole batch of them forgot nothing, yet more may be due. `KeyStore.run`
    calls it again after its next fetch, as after a batch forgotten (before: a minute later, the due keys held that
    long)."""
    ring, _ = _day_of_letters(monkeypatch)
    for i in range(3):  # due first: "gone" sorts before "letter"
        ring._keys.expires(f"dlq:gone-{i}", f"key-{i}", NOW + timedelta(days=1))
    calls = await _expiries(ring)
    assert calls == [(10, 0), (20, 3), (30, 3), (40, 1), (100, 0)] and len(ring) == 0, calls


def test_a_key_whose_cipher_left_the_kept_ones_seals_and_opens_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyring keeps the AES-GCM objects of the keys it used last only (`CIPHERS_KEPT`; ~2.5 KB each): an older
    key's is built again on use, and what it sealed opens; an erased key's leaves at once."""
    from services.privacy import keyring as keyrings

    monkeypatch.setattr(keyrings, "CIPHERS_KEPT", 2)
    ring = keyring()
    sealed = [sealing.seal_event(ring, _event(f"e{i}", f"TL-{i}", {"name": f"Người {i}"}))[0] for i in range(4)]
    for event in sealed * 2:
        assert isinstance(event.data.applicant, sealing.SealedApplicant)
        assert sealing.open_field(ring, event.id, event.data.applicant, "name") == f"Người {event.id[1:]}"
    assert len(ring) == 4 and len(ring._built) <= 2
    first = sealed[0].data.applicant
    assert isinstance(first, sealing.SealedApplicant)
    sealing.open_field(ring, sealed[0].id, first, "name")  # its cipher built again: among the kept ones
    held = ring._find(first.subject, first.key_id)
    assert held is not None and held in ring._built
    ring.apply(record_key(first.subject, first.key_id), None)
    with pytest.raises(Erased):
        sealing.open_field(ring, sealed[0].id, first, "name")
    assert held.aead is None and held.dek == b"", "an erased key's bytes leave memory at once (review)"


async def test_a_key_store_given_the_wrong_kek_logs_sparingly_and_counts_every_record() -> None:
    """Every key record under a KEK this store was not given is counted; the log gets one line for the first (and
    one every 10 s after, saying how many it stands for), not one per record (CLI audit: 74 lines for one `dlq
    list`; a service restoring millions of keys wrote as many)."""
    other = Keyring({"kek-9": bytes(range(200, 232))}, "kek-9", PEPPER, clock=lambda: NOW)
    records = [r for i in range(100) for r in other.key_for(f"a-{i}")[2]]
    store = KeyStore(KafkaConnection(bootstrap="127.0.0.1:1"), "ns", keyring(), client_id="tests-wrong-kek")
    counted = UNREADABLE.labels("applicants", "PrivacyError")
    before = counted._value.get()

    def consumed(rs: list[KeyRecord], first: int) -> list[ConsumerRecord[bytes, bytes]]:
        return [ConsumerRecord("ns.commune.keys.applicants", 0, first + i, 0, 0, r.record_key, encoded(r), None,
                               len(r.record_key), len(encoded(r)), []) for i, r in enumerate(rs)]

    with structlog.testing.capture_logs() as logs:
        store.apply_all(consumed(records, 0))
    assert store.unreadable == 100
    assert counted._value.get() - before == 100, "counted for Prometheus too (ops audit: a log line only)"
    assert UNREADABLE_NOW._value.get() == 100, "and the keys held unreadable now"
    # the first ten re-wrapped under the KEK this store has (a rotation): readable again, out of the gauge
    other_kek = bytes(range(200, 232))
    rewrapped = [KeyRecord.model_validate({**r.model_dump(), "kek_id": "kek-1", "wrapped": crypto.wrap(
        KEK, crypto.unwrap(other_kek, r.wrapped, r.subject, r.key_id), r.subject, r.key_id)}) for r in records[:10]]
    store.apply_all(consumed(rewrapped, 100))
    assert UNREADABLE_NOW._value.get() == 90
    assert [(e["event"], e["records"], e["offset"]) for e in logs] == [("privacy.key_record_unreadable", 1, 0)]
