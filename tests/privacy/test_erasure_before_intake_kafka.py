"""An erasure made while intake is down, on the real broker: a record written before it and read after it does not
bring the applicant back (ADR 0042), whatever the eraser's clock says (ADR 0043); a record written after it is the
citizen's new data, under a live key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas import wire
from schemas.dossier import DossierStatusChanged
from schemas.events import Family
from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord, SealedApplicant, record_key
from schemas.topics import (
    CANONICAL,
    DLQ_INTAKE,
    KEYS_APPLICANTS,
    KEYS_DEAD_LETTERS,
    PRIVACY_AUDIT,
    PRIVACY_ERASURES,
    RAW,
    scoped,
)
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.privacy import crypto, erase
from services.privacy.applicant import open_applicant
from services.privacy.crypto import Erased
from services.privacy.deadletters import open_dead_letter
from services.privacy.erase import erase_subject, live_keys_by_topic
from services.privacy.store import KeyStore
from tests.intake.conftest import StartIntake, intake_topics, start_intake
from tests.kafkatools import produce, read_all, stop_service
from tests.privacy.keys import KEK, PEPPER, keyring
from tests.samples import HDR, dumps, portal_dossier

__all__ = ["intake_topics", "start_intake"]
pytestmark = pytest.mark.kafka

NAME, CCCD, PHONE = "Nguyễn Thị Lan", "008123456789", "0912345678"


def _dossier(code: str) -> bytes:
    return dumps(portal_dossier(code, ChuHoSo=NAME, SoGiayToChuHoSo=CCCD, SoDienThoaiChuHoSo=PHONE))


def _applicant(record: ConsumerRecord[bytes, bytes]) -> tuple[str, SealedApplicant]:
    event = wire.decode(record.headers, record.value)
    assert isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, SealedApplicant)
    return event.id, event.data.applicant


async def _opens_under_some_key(conn: KafkaConnection, ns: str, event_id: str, sealed: SealedApplicant) -> bool:
    """Whether any key record of the subject on either key topic, unwrapped with the KEK and whatever erasure marks
    say (a backup of the topics, a reader ignoring the mark), opens the applicant's name."""
    for spec in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS):
        for record in await read_all(conn.bootstrap, scoped(spec, ns).name, idle=0.5):
            if not (record.key or b"").startswith(f"{sealed.subject}/".encode()) or record.value is None:
                continue
            try:
                key = KeyRecord.model_validate_json(record.value)
            except ValueError:
                continue  # the erasure mark
            dek = crypto.unwrap(AESGCM(KEK), key.wrapped, key.subject, key.key_id)
            try:
                crypto.open_sealed(AESGCM(dek), sealed.name or "", f"{event_id}/applicant.name".encode())
            except crypto.Tampered:
                continue
            return True
    return False


@pytest.mark.parametrize("eraser_behind", [timedelta(0), timedelta(minutes=5)],
                         ids=["eraser-right", "eraser-5min-slow"])
def test_a_record_written_before_an_erasure_and_read_after_it_stays_erased(
    kafka_bootstrap: str, namespace: str, intake_topics: dict[str, str], start_intake: StartIntake,
    eraser_behind: timedelta, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Intake down: a dossier of Lan's and a rejected record of hers are written, then she is erased (0 keys: none
    made yet) by a host whose clock is `eraser_behind` the broker's, then intake reads them. The canonical event goes
    out with her applicant erased: no key of any topic opens it (nor the dead letter), a fresh key store says Erased,
    and she has no live key. Her next dossier, written after the erasure, is new data: sealed under a live key that
    opens. Before ADR 0043 the mark was the eraser's clock: 5 minutes slow, her first dossier got a live key."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    ns = namespace
    raw_topic, dlq_topic = intake_topics[RAW[Family.DOSSIER].name], intake_topics[DLQ_INTAKE.name]
    canonical_topic = intake_topics[CANONICAL[Family.DOSSIER].name]
    asyncio.run(ensure_topics(conn, [scoped(t, ns) for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT,
                                                             PRIVACY_ERASURES)]))
    subject = crypto.cccd_subject(PEPPER, CCCD)
    # the second lacks its commune-code header: a dead letter (missing_commune_header), sealed under Lan's subject
    asyncio.run(produce(kafka_bootstrap, raw_topic, [(b"02269", _dossier("TL-251101-0300"), HDR),
                                                     (b"02269", _dossier("TL-251101-0301"), [])]))
    raw = sorted(asyncio.run(read_all(kafka_bootstrap, raw_topic, expect=2, idle=0.5)), key=lambda r: r.offset)
    # one broker, no other broker's clock to allow for: without the margin, the dossier written next is past the mark
    # at once, as one written a minute after a real erasure is
    monkeypatch.setattr(erase, "CLOCK_MARGIN", timedelta(0))
    asked = datetime.now(UTC) - eraser_behind
    audit = asyncio.run(erase_subject(conn, ns, subject, requested_by="operator:tester", now=asked))
    assert audit.keys_destroyed == 0
    [logged] = asyncio.run(read_all(kafka_bootstrap, scoped(PRIVACY_AUDIT, ns).name, expect=1, idle=0.5))
    [mark] = [ErasureMark.model_validate_json(r.value or b"") for r in asyncio.run(read_all(
        kafka_bootstrap, scoped(KEYS_APPLICANTS, ns).name, idle=0.5)) if r.key == record_key(subject, ERASED_MARK)]
    # dated by the broker's stamp on the audit record, after both records; never before the request
    assert mark.created_up_to == max(asked, datetime.fromtimestamp(logged.timestamp / 1000, UTC))
    assert logged.timestamp >= max(r.timestamp for r in raw)

    intake = start_intake()
    try:
        [before] = asyncio.run(read_all(kafka_bootstrap, canonical_topic, expect=1, timeout=60, idle=0.5))
        [letter] = asyncio.run(read_all(kafka_bootstrap, dlq_topic, expect=1, timeout=60, idle=0.5))
        assert dict(letter.headers)["dlq.reason"] == b"missing_commune_header"
        # when its original was written by the broker's clock, for a replay to carry (ADR 0043)
        assert dict(letter.headers)["dlq.source.written-at"] == str(raw[1].timestamp).encode()
        assert not any(asyncio.run(live_keys_by_topic(conn, ns, subject)).values()), "a live key for the erased"
        asyncio.run(produce(kafka_bootstrap, raw_topic, [(b"02269", _dossier("TL-251101-0302"), HDR)]))
        after = [r for r in asyncio.run(read_all(kafka_bootstrap, canonical_topic, expect=2, timeout=60, idle=0.5))
                 if r.offset != before.offset or r.partition != before.partition]
    finally:
        stop_service(intake)

    before_id, before_applicant = _applicant(before)
    after_id, after_applicant = _applicant(after[0])
    assert before_applicant.subject == after_applicant.subject == subject
    assert not asyncio.run(_opens_under_some_key(conn, ns, before_id, before_applicant))

    async def read_with_a_fresh_store() -> None:
        store = KeyStore(conn, ns, keyring(), client_id="tests-keys-fresh")
        await store.start()
        try:
            with pytest.raises(Erased):
                open_applicant(store.keyring, before_id, before_applicant)
            origin = dict(letter.headers)
            with pytest.raises(Erased):
                open_dead_letter(store.keyring, letter.key, letter.value, letter.headers, source_topic=raw_topic,
                                 partition=int(origin["dlq.source.partition"]),
                                 offset=int(origin["dlq.source.offset"]))
            assert open_applicant(store.keyring, after_id, after_applicant).name == NAME
        finally:
            await store.stop()

    asyncio.run(read_with_a_fresh_store())
    live = asyncio.run(live_keys_by_topic(conn, ns, subject))
    assert live[scoped(KEYS_APPLICANTS, ns).name] == {after_applicant.key_id}
    assert live[scoped(KEYS_DEAD_LETTERS, ns).name] == set()
