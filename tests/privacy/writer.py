"""What intake's shell does with a sealed decision, for tests: the event and its key records in one transaction."""

from __future__ import annotations

import uuid
from datetime import date

from schemas import wire
from schemas.events import Family
from schemas.topics import DLQ_INTAKE, EVENTS_DOSSIER, scoped
from services.common import clients
from services.common.settings import KafkaConnection
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from services.privacy.deadletters import seal_dead_letter
from services.privacy.keyring import Keyring
from services.privacy.store import key_messages
from tests.kafkatools import transactions_settled
from tests.samples import HDR, dumps, portal_dossier


def person(code: str, name: str, cccd: str, phone: str) -> bytes:
    return dumps(portal_dossier(code, status=2, ChuHoSo=name, SoGiayToChuHoSo=cccd, SoDienThoaiChuHoSo=phone))


async def write_sealed(bootstrap: str, namespace: str, ring: Keyring, raws: list[bytes],
                       dead_letters: list[bytes] = ()) -> list[Accepted]:  # type: ignore[assignment]
    """Normalise and seal `raws` as intake would, then write canonical events, dead letters and keys atomically."""
    conn = KafkaConnection(bootstrap=bootstrap)
    producer = clients.transactional_producer(conn, transactional_id=f"tests-privacy-{uuid.uuid4().hex[:8]}",
                                              client_id="tests")
    await producer.start()
    out: list[Accepted] = []
    written: set[str] = set()
    try:
        async with producer.transaction():
            for raw in raws:
                accepted = normalise(Family.DOSSIER, raw, HDR, keyring=ring)
                assert isinstance(accepted, Accepted)
                out.append(accepted)
                record = wire.encode(accepted.event)
                await producer.send(scoped(EVENTS_DOSSIER, namespace).name, record.value, key=record.key,
                                    headers=list(record.headers))
                for topic, key, value in key_messages(list(accepted.keys), namespace):
                    await producer.send(topic, value, key=key)
                    written.add(topic)
            for offset, raw in enumerate(dead_letters):
                letter = seal_dead_letter(ring, b"02269", raw, HDR, source_topic="commune.raw.dossier", partition=0,
                                          offset=offset, rejected_on=date(2026, 12, 1), retention_days=30)
                await producer.send(scoped(DLQ_INTAKE, namespace).name, letter.value, key=letter.key,
                                    headers=letter.headers)
                for topic, key, value in key_messages(letter.keys, namespace):
                    await producer.send(topic, value, key=key)
                    written.add(topic)
    finally:
        await producer.stop()
    # a key store started next reads every key record written here (a commit returns before its markers are written)
    await transactions_settled(bootstrap, {scoped(EVENTS_DOSSIER, namespace).name, *written})
    return out
