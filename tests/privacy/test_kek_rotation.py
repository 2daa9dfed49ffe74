"""Retiring a key-encryption key: the settings refuse an old KEK that would replace the current one, and the re-wrap's
choice of records (pure, no broker) writes every live key under the new KEK and never an erased one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from schemas.dossier import Applicant
from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord, record_key
from services.privacy import applicant as sealing
from services.privacy import crypto
from services.privacy.crypto import PrivacyError
from services.privacy.key_records import encoded
from services.privacy.keyring import Keyring
from services.privacy.rewrap import KeyLog, late_copies, plan
from services.privacy.settings import PrivacySettings
from tests.privacy.keys import KEK, NOW, PEPPER, keyring

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("key_table")]
"""Each test twice: keys in memory, and on disk with two subjects in memory (ADR 0034)."""

KEK2 = bytes(range(100, 132))
KEKS = {"kek-1": KEK, "kek-2": KEK2}
APPLICANTS, DEAD_LETTERS = "commune.keys.applicants", "commune.keys.deadletters"
DOSSIER = ("/communes/02269/one-stop", "TL-2512-0001")
LAN = Applicant(name="Nguyễn Thị Lan", id_number="008123456789", phone="0912345678")
MINH = Applicant(name="Trần Văn Minh", id_number="001099000111", phone="0987654321")


def _new_keyring() -> Keyring:
    """A keyring given only the new KEK, as every service is once the old one is retired."""
    return Keyring({"kek-2": KEK2}, "kek-2", PEPPER, clock=lambda: NOW)


def _old_settings(old_keks: str, kek_id: str = "kek-1") -> PrivacySettings:
    return PrivacySettings(kek=SecretStr(crypto.b64(KEK2)), kek_id=kek_id, old_keks=SecretStr(old_keks),
                           pepper=SecretStr(crypto.b64(PEPPER)))


def test_an_old_kek_under_the_current_id_is_refused_naming_the_id_not_the_key() -> None:
    """Rotating without a new PRIVACY_KEK_ID listed the old KEK under the current id, and it silently replaced it."""
    with pytest.raises(PrivacyError, match="'kek-1'") as refused:
        _old_settings(f"kek-1:{crypto.b64(KEK)}").keks()
    assert crypto.b64(KEK) not in str(refused.value) and crypto.b64(KEK2) not in str(refused.value)
    assert _old_settings(f"kek-1:{crypto.b64(KEK)}", kek_id="kek-2").keks() == KEKS


@pytest.mark.parametrize("length", [16, 31, 33])
def test_an_old_kek_not_32_bytes_is_refused_naming_its_id(length: int) -> None:
    """A truncated or padded old KEK is refused when the settings are read, not when a key of it fails to open."""
    short = crypto.b64(bytes(range(length)))
    with pytest.raises(PrivacyError, match="'kek-0' is not 32 bytes") as refused:
        _old_settings(f"kek-0:{short}", kek_id="kek-2").keks()
    assert short not in str(refused.value)


def test_an_old_kek_written_key_first_is_refused_without_naming_the_key() -> None:
    """`key:id` instead of `id:key`: the "id" is the key itself, and the message (logged: PrivacyError's are) quotes
    no part of it (review: "the old KEK '<key>' is not base64url")."""
    key = crypto.b64(KEK)
    with pytest.raises(PrivacyError, match="does not begin with a KEK id") as refused:
        _old_settings(f"{key}:kek-0", kek_id="kek-2").keks()
    assert key[:12] not in str(refused.value)


@pytest.mark.parametrize("entries", ["{key}", "kek-0", "kek-0:", ":{key}", "kek-0: ", "kek-3:{other},{key}"])
def test_an_old_kek_entry_that_is_not_id_and_key_is_refused_by_its_place(entries: str) -> None:
    """A key without its id, an id without a key: the entry was skipped, and a service started without the old KEK
    (notify's messages under it then waited for ever: review). Refused by its place, quoting nothing."""
    key = crypto.b64(KEK)
    with pytest.raises(PrivacyError, match=r"^entry \d of PRIVACY_OLD_KEKS is not id:base64url$"):
        _old_settings(entries.format(key=key, other=crypto.b64(bytes(32))), kek_id="kek-2").keks()


def test_an_old_kek_id_listed_twice_is_refused() -> None:
    """The second key under one id replaced the first: one of the two old KEKs was silently missing."""
    with pytest.raises(PrivacyError, match="lists 'kek-0' twice") as refused:
        _old_settings(f"kek-0:{crypto.b64(KEK)},kek-0:{crypto.b64(bytes(32))}", kek_id="kek-2").keks()
    assert crypto.b64(KEK)[:12] not in str(refused.value)
    assert _old_settings(f"kek-0:{crypto.b64(KEK)},", kek_id="kek-2").keks()["kek-0"] == KEK  # a trailing comma


def _sealed(ring: Keyring, event_id: str, who: Applicant) -> tuple[sealing.SealedApplicant, KeyRecord]:
    sealed, [record] = sealing.encrypt_applicant(ring, event_id, who, DOSSIER)
    return sealed, record


def _log(*records: tuple[str, bytes, bytes | None]) -> KeyLog:
    log = KeyLog()
    for offset, (topic, key, value) in enumerate(records):
        log.add(topic, key, value, 1_000 + offset)
    return log


def test_every_live_key_under_an_old_kek_is_rewrapped_and_opens_with_the_new_kek_alone() -> None:
    """A key under kek-1 gets the same record key, subject, id, creation and expiry under kek-2: a keyring with kek-2
    only opens what was sealed before; a key already under kek-2 is left as it is."""
    old = keyring()
    sealed, record = _sealed(old, "evt-1", LAN)
    _, newer = _sealed(Keyring({"kek-2": KEK2}, "kek-2", PEPPER, clock=lambda: NOW), "evt-2", MINH)
    _, _, [day] = old.key_for("dlq:2026-12-01", NOW + timedelta(days=2))
    log = _log((APPLICANTS, record.record_key, encoded(record)), (APPLICANTS, newer.record_key, encoded(newer)),
               (DEAD_LETTERS, day.record_key, encoded(day)))
    planned = plan(log, KEKS, "kek-2", NOW)
    written, day_copy = planned.records
    # the compacted topic's copy takes the broker's time (keys' creation times, years apart, each rolled a segment);
    # the expiring topic's keeps its record's, so it leaves with the retention its key had
    assert (written.topic, written.key, written.timestamp_ms) == (APPLICANTS, record.record_key, None)
    assert (day_copy.topic, day_copy.key, day_copy.timestamp_ms) == (DEAD_LETTERS, day.record_key, 1_002)
    again = KeyRecord.model_validate_json(written.value)
    assert again.kek_id == "kek-2" and again.model_dump(exclude={"kek_id", "wrapped"}) == record.model_dump(
        exclude={"kek_id", "wrapped"})
    assert dict(planned.counts[APPLICANTS]) == {"rewrapped": 1, "current": 1}
    reader = _new_keyring()
    reader.apply(written.key, written.value)
    assert sealing.open_applicant(reader, "evt-1", sealed).name == LAN.name


def test_an_erased_or_expired_key_is_never_written_again() -> None:
    """Tombstoned (even if a late copy followed), covered by its subject's mark, under an unreadable mark, or past
    its expiry: skipped as erased; a key created after its subject's mark (new data) is re-wrapped."""
    ring = keyring()
    _, tombstoned = _sealed(ring, "evt-1", LAN)
    _, marked = _sealed(ring, "evt-2", MINH)
    after = ring.key_for("a-after", None)[2][0]
    late = after.model_copy(update={"created_at": NOW + timedelta(minutes=5)})
    _, _, [day] = ring.key_for("dlq:2026-11-01", NOW - timedelta(days=1))
    _, _, [bad_mark] = ring.key_for("a-badmark")
    mark = ErasureMark(subject=marked.subject, created_up_to=NOW + timedelta(minutes=1))
    log = _log((APPLICANTS, tombstoned.record_key, encoded(tombstoned)), (APPLICANTS, tombstoned.record_key, None),
               (APPLICANTS, tombstoned.record_key, encoded(tombstoned)),  # a worker's late copy after the tombstone
               (APPLICANTS, marked.record_key, encoded(marked)),
               (APPLICANTS, record_key(marked.subject, ERASED_MARK), mark.model_dump_json().encode()),
               (APPLICANTS, record_key("a-after", ERASED_MARK),
                ErasureMark(subject="a-after", created_up_to=NOW).model_dump_json().encode()),
               (APPLICANTS, late.record_key, encoded(late)),
               (DEAD_LETTERS, day.record_key, encoded(day)),
               (APPLICANTS, bad_mark.record_key, encoded(bad_mark)),
               (APPLICANTS, record_key("a-badmark", ERASED_MARK), b"{not a mark"))
    planned = plan(log, KEKS, "kek-2", NOW)
    assert [r.key for r in planned.records] == [late.record_key]
    assert dict(planned.counts[APPLICANTS]) == {"erased": 3, "rewrapped": 1}
    assert dict(planned.counts[DEAD_LETTERS]) == {"erased": 1}


def test_a_record_under_a_kek_not_given_or_damaged_is_counted_unreadable_not_written() -> None:
    """A kek-0 record, a wrapped key that does not open, a value that is no key record, one filed under another
    record key: counted unreadable per topic, nothing written, no exception."""
    ring = keyring()
    _, one = _sealed(ring, "evt-1", LAN)
    _, two = _sealed(ring, "evt-2", MINH)
    _, _, [three] = ring.key_for("a-three")
    unknown = one.model_copy(update={"kek_id": "kek-0"})
    damaged = two.model_copy(update={"wrapped": crypto.b64(bytes(60))})
    log = _log((APPLICANTS, unknown.record_key, encoded(unknown)), (APPLICANTS, damaged.record_key, encoded(damaged)),
               (DEAD_LETTERS, b"dlq:2026-12-01/x", b"not json"),
               (APPLICANTS, record_key("a-other", three.key_id), encoded(three)))
    planned = plan(log, KEKS, "kek-2", NOW)
    assert planned.records == [] and planned.count("unreadable") == 4
    assert dict(planned.counts[DEAD_LETTERS]) == {"unreadable": 1}


def test_a_second_plan_after_the_rewrap_writes_nothing() -> None:
    """Once every key's last record is under the current KEK, there is nothing left to do."""
    _, record = _sealed(keyring(), "evt-1", LAN)
    log = _log((APPLICANTS, record.record_key, encoded(record)))
    [written] = plan(log, KEKS, "kek-2", NOW).records
    log.add(APPLICANTS, written.key, written.value, 2_000)
    again = plan(log, {"kek-2": KEK2}, "kek-2", NOW)
    assert again.records == [] and dict(again.counts[APPLICANTS]) == {"current": 1}


def test_a_copy_written_after_an_erasure_it_raced_is_found_for_a_tombstone() -> None:
    """An erasure between the read and the write: the re-wrapped copy landing after its tombstone, or under its
    subject's new mark, is a late copy; one the erasure's tombstone followed is not (already erased)."""
    ring = keyring()
    _, lan = _sealed(ring, "evt-1", LAN)
    _, minh = _sealed(ring, "evt-2", MINH)
    _, _, [other] = ring.key_for("a-other")
    log = _log((APPLICANTS, lan.record_key, encoded(lan)), (APPLICANTS, minh.record_key, encoded(minh)),
               (APPLICANTS, other.record_key, encoded(other)))
    written = plan(log, KEKS, "kek-2", NOW).records
    log.add(APPLICANTS, lan.record_key, None, 2_000)  # the erasure's tombstone, then the copy
    log.add(APPLICANTS, record_key(minh.subject, ERASED_MARK),
            ErasureMark(subject=minh.subject, created_up_to=NOW).model_dump_json().encode(), 2_001)
    for r in written:
        log.add(r.topic, r.key, r.value, 2_100)
    log.add(APPLICANTS, minh.record_key, None, 2_200)  # an erasure's tombstone after the copy
    assert late_copies(log, [(r.topic, r.key) for r in written]) == {APPLICANTS: {lan.record_key}}
