"""The keyring and applicant sealing: pending keys, racing key creation, erasure, dead letters (pure, no broker)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import limits
from schemas.deadletter import DeadLetterContext, OriginalRecord, Reason
from schemas.dossier import Applicant, DossierStatusChanged
from schemas.personal import PERSONAL_FIELDS, KeyRecord, SealedApplicant
from services.privacy import applicant as sealing
from services.privacy import crypto, deadletters
from services.privacy.crypto import Erased, PrivacyError, Tampered
from services.privacy.key_records import KeyUnknown
from services.privacy.keyring import Keyring
from services.privacy.store import key_messages
from tests.privacy.keys import KEK, NOW, PEPPER, keyring
from tests.samples import canonical_dossier

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("key_table")]
"""Each test twice: keys in memory, and on disk with two subjects in memory (ADR 0034)."""

KEYS = st.none() | st.binary(max_size=40)
HEADERS = st.lists(st.tuples(st.text(max_size=16) | st.sampled_from(["ce_subject", "ce_traceparent", "dlq.reason"]),
                             st.none() | st.binary(max_size=40)), max_size=6)
"""Any header list: names of any text (a `dlq.` one of the producer's own too), values null or any bytes."""
CONTEXT = DeadLetterContext(reason=Reason.NOT_JSON, field="(record)", message="m", source_topic="t",
                            source_partition=0, source_offset=1, rejected_at="2026-12-01T08:00:00+00:00").headers()

DOSSIER = ("/communes/02269/one-stop", "TL-2512-0001")
"""The dossier an applicant's event is of: (source, dossier code)."""
OTHER_DOSSIER = ("/communes/02269/one-stop", "TL-2512-0002")
LAN = Applicant(name="Nguyễn Thị Lan", id_number="008123456789", phone="0912345678", email="lan@example.vn",
                address="Thôn Nà Tàng, Xã Thượng Lâm")


def test_sealed_applicant_has_no_clear_personal_data() -> None:
    """The sealed group's JSON holds none of the applicant's values, and opens back to them with the key."""
    ring = keyring()
    sealed, records = sealing.encrypt_applicant(ring, "evt-1", LAN, DOSSIER)
    text = sealed.model_dump_json()
    for field in PERSONAL_FIELDS:
        value = getattr(LAN, field)
        assert value is None or value not in text
    assert len(records) == 1 and records[0].subject == sealed.subject
    assert sealing.open_applicant(ring, "evt-1", sealed) == LAN


def test_another_service_opens_with_the_key_record_only() -> None:
    """A keyring that got the key record from the topic (with the same KEK) opens the value; before it, unknown."""
    writer, reader = keyring(), keyring()
    sealed, records = sealing.encrypt_applicant(writer, "evt-1", LAN, DOSSIER)
    with pytest.raises(KeyUnknown):
        sealing.open_field(reader, "evt-1", sealed, "phone")
    for r in records:
        reader.apply(r.record_key, r.model_dump_json().encode())
    assert sealing.open_field(reader, "evt-1", sealed, "phone") == "0912345678"


def test_a_value_moved_to_another_event_or_field_does_not_open() -> None:
    """The associated data binds a token to its event id and field."""
    ring = keyring()
    sealed, _ = sealing.encrypt_applicant(ring, "evt-1", LAN, DOSSIER)
    with pytest.raises(Tampered):
        sealing.open_field(ring, "evt-2", sealed, "phone")
    swapped = sealed.model_copy(update={"name": sealed.phone})
    with pytest.raises(Tampered):
        sealing.open_field(ring, "evt-1", swapped, "name")


def test_pending_keys_are_returned_until_the_topic_confirms_them() -> None:
    """Each use of a key not yet read back from the topic returns its record again; once confirmed, none."""
    ring = keyring()
    _, first = sealing.encrypt_applicant(ring, "evt-1", LAN, DOSSIER)
    _, again = sealing.encrypt_applicant(ring, "evt-2", LAN, DOSSIER)
    assert first == again and len(first) == 1
    ring.apply(first[0].record_key, first[0].model_dump_json().encode())
    _, after = sealing.encrypt_applicant(ring, "evt-3", LAN, DOSSIER)
    assert after == []


def test_racing_keys_for_one_subject_coexist() -> None:
    """Two workers creating a key for one applicant at once: both records are kept, each value opens with its own."""
    a, b, reader = keyring(), keyring(), keyring()
    sealed_a, rec_a = sealing.encrypt_applicant(a, "evt-a", LAN, DOSSIER)
    sealed_b, rec_b = sealing.encrypt_applicant(b, "evt-b", LAN, DOSSIER)
    assert sealed_a.subject == sealed_b.subject and sealed_a.key_id != sealed_b.key_id
    assert rec_a[0].record_key != rec_b[0].record_key
    for r in rec_a + rec_b:
        reader.apply(r.record_key, r.model_dump_json().encode())
    assert sealing.open_field(reader, "evt-a", sealed_a, "name") == LAN.name
    assert sealing.open_field(reader, "evt-b", sealed_b, "name") == LAN.name
    assert len(reader.key_ids(sealed_a.subject)) == 2


def test_a_tombstone_erases_at_once() -> None:
    """After its tombstone, a value under the key raises Erased (not KeyUnknown), and other applicants still open."""
    ring = keyring()
    lan, rec_lan = sealing.encrypt_applicant(ring, "evt-1", LAN, DOSSIER)
    minh, _ = sealing.encrypt_applicant(ring, "evt-2", Applicant(name="Trần Văn Minh", id_number="001099000111"),
                                        DOSSIER)
    ring.apply(rec_lan[0].record_key, None)
    with pytest.raises(Erased) as caught:
        sealing.open_field(ring, "evt-1", lan, "name")
    assert not isinstance(caught.value, KeyUnknown)
    assert sealing.open_field(ring, "evt-2", minh, "name") == "Trần Văn Minh"


def test_the_subject_is_the_cccd_whatever_else_changes() -> None:
    """Two submissions of one CCCD (another phone, spaced differently) share the subject an erasure names."""
    ring = keyring()
    one, _ = sealing.encrypt_applicant(ring, "e1", LAN, DOSSIER)
    two, _ = sealing.encrypt_applicant(ring, "e2", Applicant(name="Lan", id_number="008 123 456 789", phone="0999"),
                                       DOSSIER)
    assert one.subject == two.subject == crypto.cccd_subject(PEPPER, "008123456789")


def test_key_records_hold_no_key_in_clear_and_go_to_their_topic() -> None:
    """A key record's JSON holds only the wrapped key; applicant keys go to the compacted topic, day keys elsewhere."""
    ring = keyring()
    key_id, _, records = ring.key_for("a-subject")
    dek = crypto.unwrap(KEK, records[0].wrapped, "a-subject", key_id)
    assert crypto.b64(dek) not in records[0].model_dump_json() and dek.hex() not in records[0].model_dump_json()
    _, _, day = ring.key_for("dlq:2026-12-01", NOW + timedelta(days=31))
    topics = [m[0] for m in key_messages(records + day, "ns")]
    assert topics == ["ns.commune.keys.applicants", "ns.commune.keys.deadletters"]


def test_a_record_under_another_kek_is_refused_not_trusted() -> None:
    """A key record wrapped under an unknown KEK, or forged, raises PrivacyError (the store counts and skips it)."""
    other = Keyring({"kek-2": bytes(32)}, "kek-2", PEPPER)
    _, _, records = other.key_for("a-x")
    ring = keyring()
    with pytest.raises(PrivacyError):
        ring.apply(records[0].record_key, records[0].model_dump_json().encode())
    forged = records[0].model_copy(update={"kek_id": "kek-1"})
    with pytest.raises(Tampered):
        ring.apply(forged.record_key, forged.model_dump_json().encode())
    assert len(ring) == 0


def test_dead_letters_of_a_known_applicant_use_their_key() -> None:
    """A rejected record naming a CCCD is sealed under that applicant's key: erasing them erases it."""
    ring = keyring()
    raw = orjson.dumps({"MaHoSo": "X", "SoGiayToChuHoSo": "008123456789", "ChuHoSo": "Nguyễn Thị Lan"})
    letter = deadletters.seal_dead_letter(
        ring, b"008123456789", raw, [("x-applicant-phone", b"0912345678")], source_topic="commune.raw.dossier",
        partition=2, offset=7, rejected_on=date(2026, 12, 1), retention_days=30)
    assert b"Lan" not in letter.value and b"008123456789" not in letter.value and letter.key is None
    assert dict(letter.headers)["dlq.sealed.subject"].decode() == crypto.cccd_subject(PEPPER, "008123456789")
    assert "x-applicant-phone" not in dict(letter.headers)
    args = {"source_topic": "commune.raw.dossier", "partition": 2, "offset": 7}
    assert deadletters.open_dead_letter(ring, None, letter.value, letter.headers, **args) == OriginalRecord(
        b"008123456789", raw, [("x-applicant-phone", b"0912345678")])
    ring.apply(letter.keys[0].record_key, None)
    with pytest.raises(Erased):
        deadletters.open_dead_letter(ring, None, letter.value, letter.headers, **args)


@pytest.mark.parametrize("path", [("data", "applicant"), ("applicant",)])
def test_a_dead_letter_naming_only_a_zalo_id_is_sealed_under_its_applicants_key(path: tuple[str, ...]) -> None:
    """A rejected record whose applicant has a Zalo id and no CCCD, phone or e-mail is sealed under that applicant's
    subject, as intake's sealing takes it (`applicant.subject_of`): `erase --zalo` erases it (before: the day key,
    which their erasure never reached); a placeholder Zalo id ("-") names nobody and leaves it to the day key."""
    ring = keyring()
    for name, zalo in (("Lan", "2512523625412515"), ("An", "-")):
        group: dict[str, object] = {"name": name, "zalo_user_id": zalo}
        for step in reversed(path):
            group = {step: group}
        raw = orjson.dumps({"id": "x", **group})
        letter = deadletters.seal_dead_letter(ring, None, raw, [], source_topic="commune.raw.dossier", partition=0,
                                              offset=1, rejected_on=date(2026, 12, 1), retention_days=30)
        subject = dict(letter.headers)["dlq.sealed.subject"].decode()
        if zalo == "-":
            assert subject == "dlq:2026-12-01"
            continue
        assert subject == crypto.identifier_subject(PEPPER, "zalo", zalo) == \
            sealing.subject_of(ring, Applicant(name=name, zalo_user_id=zalo), DOSSIER)
        assert zalo.encode() not in letter.value
        ring.apply(letter.keys[0].record_key, None)
        with pytest.raises(Erased):
            deadletters.open_dead_letter(ring, None, letter.value, letter.headers, source_topic="commune.raw.dossier",
                                         partition=0, offset=1)


@given(raw=st.none() | st.binary(max_size=300), key=KEYS, headers=HEADERS)
@settings(deadline=None)
def test_anything_else_is_sealed_under_the_day_key_which_expires(raw: bytes | None, key: bytes | None,
                                                                 headers: list[tuple[str, bytes | None]]) -> None:
    """Bytes naming no applicant (or none: a tombstone), with any key and headers (null values, non-UTF-8 bytes), are
    sealed under the day's key and open back to the same key, headers and value; after the retention the key is
    gone and the whole record with it."""
    now = [NOW]
    ring = keyring(lambda: now[0])
    if raw is not None and deadletters.identify(ring, raw) is not None:
        return
    letter = deadletters.seal_dead_letter(
        ring, key, raw, headers, source_topic="t", partition=0, offset=1, rejected_on=NOW.date(), retention_days=30)
    stored = [*letter.headers, *CONTEXT]  # intake's dlq.* after the letter's own
    assert dict(stored)["dlq.sealed.subject"] == b"dlq:2026-12-01" and letter.keys[0].expires_at is not None
    opened = deadletters.open_dead_letter(ring, letter.key, letter.value, stored, source_topic="t", partition=0,
                                          offset=1)
    assert opened == OriginalRecord(key, raw, [*headers, *CONTEXT])
    now[0] = NOW + timedelta(days=31)
    with pytest.raises(Erased):
        deadletters.open_dead_letter(ring, letter.key, letter.value, stored, source_topic="t", partition=0, offset=1)
    assert ring.expire() == 1


def test_settings_build_a_working_keyring_and_hide_secrets() -> None:
    """PRIVACY_* settings give a keyring with the same KEK and pepper; their repr shows no secret."""
    from tests.privacy.keys import settings

    s = settings()
    assert s.keks() == {"kek-1": KEK}
    assert crypto.b64(KEK) not in repr(s) and crypto.b64(PEPPER) not in repr(s)
    sealed, _ = sealing.encrypt_applicant(s.keyring(), "e", LAN, DOSSIER)
    assert isinstance(sealed, SealedApplicant) and sealed.subject == crypto.cccd_subject(PEPPER, LAN.id_number or "")


def test_operators_see_erased_fields_as_erased() -> None:
    """The display form shows clear fields while the key lives, `[erased]` for each of them after its tombstone."""
    ring = keyring()
    sealed, records = sealing.encrypt_applicant(ring, "evt-1", LAN, DOSSIER)
    assert sealing.for_display(ring, "evt-1", sealed)["name"] == LAN.name
    ring.apply(records[0].record_key, None)
    shown = sealing.for_display(ring, "evt-1", sealed)
    assert shown["name"] == shown["phone"] == "[erased]" and "zalo_user_id" not in shown


ONE_LINE = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029\u202a\u202b\u202c"
                         "\u202d\u202e\u2066\u2067\u2068\u2069")
"""What a name or a CCCD may hold (`schemas.limits.identifier`): no control, line-separator or bidi character."""


@given(applicant=st.builds(
    Applicant, name=st.none() | st.text(ONE_LINE, max_size=200), id_number=st.none() | st.text(ONE_LINE, max_size=20),
    phone=st.none() | st.text(alphabet="0123456789+ ", max_size=20), address=st.none() | st.text(max_size=500)))
@settings(deadline=None)
def test_any_applicant_round_trips_through_sealing(applicant: Applicant) -> None:
    """Whatever the applicant's fields hold (any Unicode, empty, missing), sealing then opening gives them back; a
    contact that reaches nobody (a phone of spaces, "+", "0000000000") is not sealed (notify would choose it)."""
    ring = keyring()
    sealed, _ = sealing.encrypt_applicant(ring, "evt-x", applicant, DOSSIER)
    assert SealedApplicant.model_validate_json(sealed.model_dump_json()) == sealed
    opened = sealing.open_applicant(ring, "evt-x", sealed)
    assert opened == applicant.model_copy(update={f: kept(applicant, f) for f in PERSONAL_FIELDS})


def kept(applicant: Applicant, field: str) -> str | None:
    """What sealing keeps of a field: a value, and for a contact one that reaches someone (`crypto.identifies`)."""
    value = getattr(applicant, field) or None
    kind = sealing.CONTACT_KINDS.get(field)
    return value if value is None or kind is None or crypto.identifies(kind, value) else None


def test_an_applicant_without_cccd_is_erasable_by_the_phone_they_gave() -> None:
    """No CCCD: the subject comes from the phone, normalised (+84, spaces), as `erase --phone` computes it."""
    sealed, _ = sealing.encrypt_applicant(keyring(), "e", Applicant(name="Lan", phone="+84 912 345 678"), DOSSIER)
    assert sealed.subject == crypto.identifier_subject(PEPPER, "phone", "0912345678")


@pytest.mark.parametrize(("kind", "value", "one_person"), [
    ("phone", "0912345678", True), ("phone", "+84 912 345 678", True), ("phone", "-", False),
    ("phone", "không có", False), ("phone", "N/A", False), ("phone", "( )", False), ("phone", "0123", False),
    ("cccd", "008 123 456 789", True), ("cccd", "123456789", True), ("cccd", "12345", False),
    ("cccd", "٠١٢٣٤٥٦٧٨٩٠١", False), ("email", "lan@example.vn", True), ("email", "@", False),
    ("email", "none", False), ("zalo", "Z-1", True), ("zalo", "  ", False),
    # placeholders that named one subject for every applicant carrying them (audit 2026: ADR 0015 passes them over)
    ("zalo", "-", False), ("zalo", "N/A", False), ("zalo", " không có ", False), ("zalo", "0", False),
    ("zalo", "...", False), ("zalo", "2512523625412515", True), ("zalo", "lan.nguyen", True),
    ("cccd", "000000000000", False), ("cccd", "111 111 111 111", False), ("cccd", "000000000", False),
    ("phone", "0000000000", False), ("phone", "000.000.0000", False), ("phone", "1111111111", False),
    ("phone", "0999999999", True),
])
def test_only_an_identifier_of_one_person_names_a_subject(kind: str, value: str, one_person: bool) -> None:
    assert crypto.identifies(kind, value) is one_person


def test_a_placeholder_phone_does_not_put_strangers_under_one_key() -> None:
    """Dossiers whose phone is "-" or "N/A" each get a subject of their own (found by the review helper: all shared
    one, and an erasure of that "phone" would have shredded them all); a real phone still names its subject."""
    ring = keyring()
    placeholders = [Applicant(name=f"Người {i}", phone=p) for i, p in enumerate(["-", "N/A", "-", "không có"])]
    subjects = [sealing.subject_of(ring, a, (DOSSIER[0], f"TL-{i}")) for i, a in enumerate(placeholders)]
    assert len(set(subjects)) == len(subjects)
    assert sealing.subject_of(ring, Applicant(name="Lan", phone="-", email="lan@example.vn"), DOSSIER) == \
        ring.subject("email", "lan@example.vn")


@pytest.mark.parametrize("identifiers", [{"zalo": "-"}, {"zalo": "N/A"}, {"phone": "0000000000"},
                                         {"cccd": "000000000000"}])
def test_applicants_sharing_only_a_placeholder_get_subjects_of_their_own(identifiers: dict[str, str]) -> None:
    """Two strangers whose only identifier is a placeholder Zalo id, an all-zero phone or CCCD are not sealed under
    one subject (before: one subject and key, which one erasure would shred); a real phone after it still counts."""
    fields = {"zalo": "zalo_user_id", "phone": "phone", "cccd": "id_number"}
    ring = keyring()
    strangers = [Applicant(name=name, **{fields[k]: v for k, v in identifiers.items()}) for name in ("An", "Bình")]
    assert sealing.subject_of(ring, strangers[0], DOSSIER) != sealing.subject_of(ring, strangers[1], OTHER_DOSSIER)
    if "cccd" in identifiers:
        with_phone = Applicant(name="An", id_number=identifiers["cccd"], phone="0912000001")
        assert sealing.subject_of(ring, with_phone, DOSSIER) == ring.subject("phone", "0912000001")


_WORDS = st.text(alphabet="abcdeđêơưạẠ Lan", max_size=30)


@given(applicant=st.builds(
    Applicant, name=st.none() | _WORDS, id_number=st.none() | st.sampled_from(["008123456789", "x"]),
    phone=st.none() | st.text(alphabet="0123456789+ ", max_size=12), email=st.none() | st.emails(),
    zalo_user_id=st.none() | st.text(alphabet="0123456789abc", max_size=10), address=st.none() | _WORDS))
@settings(deadline=None, max_examples=60)
def test_a_sealed_event_is_what_pydantic_would_build(applicant: Applicant) -> None:
    """Sealing builds its models without pydantic's `model_construct`/`model_copy` (`envelope.built`, hot path):
    the sealed event equals, field for field and in the fields it counts as set, what those would give, and the
    clear event it came from is left as it was."""
    clear = DossierStatusChanged.model_validate({**canonical_dossier(), "data": {
        **canonical_dossier()["data"], "applicant": applicant.model_dump(exclude_unset=True)}})
    before = clear.model_dump_json()
    event, _ = sealing.seal_event(keyring(), clear)
    sealed = event.data.applicant
    assert isinstance(sealed, SealedApplicant)
    reference_applicant = SealedApplicant.model_construct(  # as sealing built it before `built`
        subject=sealed.subject, key_id=sealed.key_id, preferred_locale=applicant.preferred_locale,
        **{f: getattr(sealed, f) for f in PERSONAL_FIELDS if kept(applicant, f)})
    reference = clear.model_copy(update={"data": clear.data.model_copy(update={"applicant": reference_applicant})})
    assert event == reference and event.model_dump_json() == reference.model_dump_json()
    for mine, theirs in ((event, reference), (event.data, reference.data), (sealed, reference_applicant)):
        assert mine.model_fields_set == theirs.model_fields_set
    assert clear.model_dump_json() == before and clear.data.applicant is not None
    assert SealedApplicant.model_validate_json(sealed.model_dump_json()) == sealed


def test_a_subject_with_a_day_key_and_an_expired_one_gets_a_fresh_key() -> None:
    """`key_for`'s short cut (one key without expiry) leaves keys with an expiry to the full check: a day key seals
    the letters that expire no later than it, until it has expired."""
    now = [NOW]
    ring = keyring(lambda: now[0])
    first, _, _ = ring.key_for("dlq:2026-12-01", expires_at=NOW + timedelta(days=1))
    assert ring.key_for("dlq:2026-12-01", NOW + timedelta(days=1))[0] == first
    now[0] = NOW + timedelta(days=2)
    assert ring.key_for("dlq:2026-12-01", NOW + timedelta(days=1))[0] != first
    lasting, _, _ = ring.key_for("a-subject")
    now[0] = NOW + timedelta(days=4000)
    assert ring.key_for("a-subject")[0] == lasting


def test_a_key_record_is_what_pydantic_would_build() -> None:
    """`key_for` builds its record without `model_construct` (hot path): equal, with the same fields set, and its
    value on the topic is pydantic's JSON of it."""
    ring = keyring()
    for expiry in (None, NOW + timedelta(days=31)):
        _, _, (record,) = ring.key_for("dlq:2026-12-01" if expiry else "a-subject", expiry)
        reference = KeyRecord.model_construct(**{f: getattr(record, f) for f in KeyRecord.model_fields})
        assert record == reference and record.model_fields_set == reference.model_fields_set
        ((_, key, value),) = key_messages([record], "")
        assert key == record.record_key and value == reference.model_dump_json(exclude_none=True).encode()
        assert KeyRecord.model_validate_json(value) == record


def test_a_key_read_back_as_written_is_confirmed_once_then_its_copies_are_not_parsed_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The key store reads back every key record intake wrote (a pending key's record goes with every transaction
    that uses it). The first copy is parsed, checked and unwrapped as any record; once it confirmed the key, later
    copies byte for byte the same are recognised without parsing; any other value of that record key is parsed and
    checked (a changed wrapped key is refused, and before the confirmation the key stays pending)."""
    ring = keyring()
    key_id, _, (record,) = ring.key_for("a-subject")
    ((_, key, value),) = key_messages([record], "")
    forged = record.model_copy(update={"wrapped": crypto.seal(bytes(32), bytes(32), b"x")})
    with pytest.raises(Tampered):
        ring.apply(key, forged.model_dump_json(exclude_none=True).encode())
    assert ring.key_for("a-subject")[2] == [record]  # still pending
    ring.apply(key, value)
    assert ring.key_for("a-subject")[0] == key_id and ring.key_for("a-subject")[2] == []

    def unparsed(*_: object, **__: object) -> KeyRecord:
        raise AssertionError("parsed again")

    with monkeypatch.context() as patched:
        patched.setattr(KeyRecord, "model_validate_json", unparsed)
        ring.apply(key, value)  # written again by a transaction before the confirmation: not parsed
        with pytest.raises(AssertionError, match="parsed again"):
            ring.apply(key, record.model_dump_json().encode())  # another spelling of the record: parsed
    with pytest.raises(Tampered):
        ring.apply(key, forged.model_dump_json(exclude_none=True).encode())
    assert ring.key_for("a-subject") == (key_id, ring.key_for("a-subject")[1], []) and len(ring) == 1


def test_a_key_record_made_here_that_no_reader_could_use_is_refused_at_its_read_back() -> None:
    """The record a keyring makes is built, not validated: only its read-back checks it. One no reader can use
    (here a key-encryption key id that parsing strips) is refused then, and the key stays pending (found by review:
    confirming a key from its own bytes would have trusted it unchecked)."""
    ring = Keyring({" kek-1": KEK}, " kek-1", PEPPER)
    _, _, (record,) = ring.key_for("a-subject")
    ((_, key, value),) = key_messages([record], "")
    with pytest.raises(PrivacyError):
        ring.apply(key, value)
    assert ring.key_for("a-subject")[2] == [record]


def test_a_key_written_again_after_its_tombstone_stays_erased() -> None:
    """A worker that made a key writes its record with every transaction until it reads the key back; a copy written
    after the erasure's tombstone (the audit's race) does not bring the key back in any keyring that saw the
    tombstone: values under it stay erased (before, the late copy revived the key)."""
    maker, reader = keyring(), keyring()
    sealed, [record] = sealing.encrypt_applicant(maker, "evt-1", LAN, DOSSIER)
    value = record.model_dump_json().encode()
    for ring in (maker, reader):
        ring.apply(record.record_key, value)
        ring.apply(record.record_key, None)  # the erasure
        ring.apply(record.record_key, value)  # written again before the maker read the tombstone
        with pytest.raises(Erased):
            sealing.open_field(ring, "evt-1", sealed, "name")
    again, [fresh] = sealing.encrypt_applicant(maker, "evt-2", LAN, DOSSIER)  # the applicant's next dossier: a new key
    assert fresh.key_id != record.key_id and again.key_id == fresh.key_id


@pytest.mark.parametrize("written", ["0912345678", "+84 912 345 678", "+84 (0)912 345 678", "0084912345678",
                                     "84912345678", "+84 0912345678", "091 234 5678", "091.234.5678"])
def test_every_spelling_of_a_phone_names_one_subject(written: str) -> None:
    """An applicant sealed under a phone written with or without the country code (with +, 00 or neither) is the
    subject an erasure by `0912345678` destroys (the audit found 84..., 0084... and +84 0... under others)."""
    assert crypto.identifier_subject(PEPPER, "phone", written) == crypto.identifier_subject(PEPPER, "phone",
                                                                                         "0912345678")


def test_a_landline_with_its_country_code_is_the_domestic_number_and_short_numbers_stay() -> None:
    """`+84 24 3825 3536` and `842438253536` are `02438253536`; numbers that are no Vietnamese number in another form
    (a short code, too few digits after 84) keep their digits."""
    assert {crypto.normalise_phone(p) for p in ("+84 24 3825 3536", "842438253536", "024 3825 3536")} == \
        {"02438253536"}
    assert [crypto.normalise_phone(p) for p in ("113", "8491234", "+1 415 555 0100")] == ["113", "8491234",
                                                                                         "+14155550100"]


@pytest.mark.parametrize("placeholder", ["-", "N/A", "không có", "0"])
def test_a_dead_letter_with_a_placeholder_cccd_is_sealed_under_the_applicants_phone(placeholder: str) -> None:
    """A rejected portal record whose CCCD is a placeholder is sealed under the phone, as its accepted events are,
    so an erasure by the phone reaches it (before: under the placeholder's subject, which no erasure may name)."""
    ring = keyring()
    raw = orjson.dumps({"MaHoSo": "X", "SoGiayToChuHoSo": placeholder, "SoDienThoaiChuHoSo": "0912 345 678",
                        "ChuHoSo": "Nguyễn Thị Lan"})
    letter = deadletters.seal_dead_letter(
        ring, b"02269", raw, [], source_topic="commune.raw.dossier", partition=0, offset=1,
        rejected_on=date(2026, 12, 1), retention_days=30)
    assert dict(letter.headers)["dlq.sealed.subject"].decode() == crypto.identifier_subject(PEPPER, "phone",
                                                                                           "0912345678")
    assert letter.keys[0].expires_at is not None  # the phone had no key yet: one that goes with the letter


def test_the_longest_field_in_the_widest_characters_seals_into_a_token_every_reader_takes() -> None:
    """Each personal field at its length limit in 4-byte characters seals into a token the canonical schema accepts,
    and the event decodes on the wire (the audit's address of 378 emoji sealed past the old 2,048 limit: intake
    published it and notify could not decode it)."""
    from schemas import wire

    widest = {f: "😀" * limits.max_length(Applicant, f) for f in PERSONAL_FIELDS
              if f not in ("phone", "email", "zalo_user_id")}  # identifiers: their own patterns
    event = DossierStatusChanged.model_validate(canonical_dossier())
    event = event.model_copy(update={"data": event.data.model_copy(update={"applicant": Applicant(**widest)})})
    sealed, _ = sealing.seal_event(keyring(), event)
    record = wire.encode(sealed)
    decoded = wire.decode(record.headers, record.value)
    assert isinstance(decoded, DossierStatusChanged) and isinstance(decoded.data.applicant, SealedApplicant)
    assert len(decoded.data.applicant.address or "") > 2048


def _mark(ring: Keyring, subject: str, created_up_to: datetime) -> None:
    from schemas.personal import ERASED_MARK, ErasureMark, record_key

    ring.apply(record_key(subject, ERASED_MARK),
               ErasureMark(subject=subject, created_up_to=created_up_to).model_dump_json().encode())


@pytest.mark.parametrize("mark_first", [False, True])
def test_an_erasure_mark_erases_the_subjects_keys_in_whatever_order_they_are_read(mark_first: bool) -> None:
    """After compaction a key store started later may find only a late copy of an erased key (its tombstone gone) and
    the subject's erasure mark: the key is erased whichever comes first; a key created after the mark opens."""
    maker = keyring()
    sealed, [record] = sealing.encrypt_applicant(maker, "evt-1", LAN, DOSSIER)
    fresh = keyring()
    late_copy = (record.record_key, record.model_dump_json().encode())
    steps = [lambda: _mark(fresh, sealed.subject, NOW + timedelta(minutes=1)), lambda: fresh.apply(*late_copy)]
    for step in (steps if mark_first else reversed(steps)):
        step()
    with pytest.raises(Erased):
        sealing.open_field(fresh, "evt-1", sealed, "name")
    later = keyring(lambda: NOW + timedelta(hours=1))
    newer, [new_record] = sealing.encrypt_applicant(later, "evt-2", LAN, DOSSIER)
    fresh.apply(new_record.record_key, new_record.model_dump_json().encode())
    assert sealing.open_field(fresh, "evt-2", newer, "name") == LAN.name


def test_a_worker_that_read_the_mark_dates_the_subjects_new_key_after_it() -> None:
    """A worker whose clock is behind the erasure's (and its minute of margin) still makes the erased subject's next
    key one every reader takes: dated after the mark; its pending key of before the mark is forgotten."""
    worker = keyring()  # its clock: NOW
    sealed, [old] = sealing.encrypt_applicant(worker, "evt-1", LAN, DOSSIER)
    _mark(worker, sealed.subject, NOW + timedelta(minutes=1))
    again, [new] = sealing.encrypt_applicant(worker, "evt-2", LAN, DOSSIER)
    assert new.key_id != old.key_id and new.created_at > NOW + timedelta(minutes=1)
    reader = keyring()
    _mark(reader, sealed.subject, NOW + timedelta(minutes=1))
    reader.apply(new.record_key, new.model_dump_json().encode())
    assert sealing.open_field(reader, "evt-2", again, "name") == LAN.name


@pytest.mark.parametrize("written", ["84912345678", "0084912345678", "+84 0912345678", "+84 (0)912 345 678"])
def test_an_erasure_by_a_phone_reaches_the_subjects_of_its_old_spellings(written: str) -> None:
    """Copies sealed before every spelling was one subject (the rule then: digits, `+84` made `0`) are under the
    subject of that spelling; an erasure by the phone erases those subjects too (the review: nothing reached them)."""
    import re

    digits = re.sub(r"[^\d+]", "", written)
    old_rule = "0" + digits[3:] if digits.startswith("+84") else digits
    assert crypto.subject_id(PEPPER, "phone", old_rule) in crypto.legacy_phone_subjects(PEPPER, "091 234 5678")


@pytest.mark.parametrize("mark_first", [False, True])
def test_a_key_created_at_the_very_time_of_an_erasure_mark_is_erased(mark_first: bool) -> None:
    """A mark erases the keys created up to and at its `created_up_to`: a key created at that very instant is erased,
    whether its record is read before the mark or after it."""
    sealed, [record] = sealing.encrypt_applicant(keyring(), "evt-1", LAN, DOSSIER)  # created at NOW
    ring = keyring()
    steps = [lambda: _mark(ring, sealed.subject, record.created_at),
             lambda: ring.apply(record.record_key, record.model_dump_json().encode())]
    for step in (steps if mark_first else reversed(steps)):
        step()
    with pytest.raises(Erased, match="erased"):
        sealing.open_field(ring, "evt-1", sealed, "name")


def test_a_key_is_unusable_from_the_very_instant_of_its_expiry() -> None:
    """A key opens a microsecond before its `expires_at`, and at `expires_at` itself it has expired."""
    now = [NOW]
    ring = keyring(lambda: now[0])
    expiry = NOW + timedelta(days=1)
    key_id, _, _ = ring.key_for("dlq:2026-12-01", expires_at=expiry)
    now[0] = expiry - timedelta(microseconds=1)
    assert ring.dek("dlq:2026-12-01", key_id) is not None
    now[0] = expiry
    with pytest.raises(Erased, match="expired"):
        ring.dek("dlq:2026-12-01", key_id)
