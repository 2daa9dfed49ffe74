"""A key store kept across restarts (ADR 0034) on the real broker: a restart reads only the key records written
since, an erasure made while it was down is honoured, and a store that no longer fits the topics is read again."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import wire
from schemas.dossier import DossierStatusChanged
from schemas.personal import SealedApplicant
from schemas.topics import DLQ_INTAKE, EVENTS_DOSSIER, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.privacy.applicant import open_applicant
from services.privacy.crypto import Erased
from services.privacy.disk import DiskKeys, Kept
from services.privacy.erase import erase_cccd
from services.privacy.keyring import Keyring
from services.privacy.store import KeyStore
from tests.kafkatools import read_all
from tests.privacy.keys import KEK, PEPPER, keyring
from tests.privacy.writer import person, write_sealed

pytestmark = pytest.mark.kafka

LAN = ("Nguyễn Thị Lan", "008123456789", "0912345678")
MINH = ("Trần Văn Minh", "001099000111", "0987654321")
HOA = ("Lê Thị Hoa", "002088000222", "0911222333")
NAM = ("Phạm Văn Nam", "003077000333", "0944555666")


async def test_a_kept_store_reads_only_what_was_written_since_and_honours_an_erasure_made_meanwhile(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                       KEYS_DEAD_LETTERS, PRIVACY_AUDIT)])
    keks = {"kek-1": KEK}

    def kept(given: dict[str, bytes] = keks) -> Keyring:
        return Keyring(given, "kek-1", PEPPER, table=DiskKeys(tmp_path, cached=1, kept=Kept.of(ns, given, "kek-1")))

    async def started(ring: Keyring) -> KeyStore:
        store = KeyStore(conn, ns, ring, client_id="tests-keys-kept")
        await store.start()
        return store

    await write_sealed(kafka_bootstrap, ns, keyring(), [person("TL-1", *LAN), person("TL-2", *MINH),
                                                        person("TL-3", *HOA)])
    first = await started(kept())
    try:
        assert first.applied == 3 and len(first.keyring) == 3
    finally:
        await first.stop()
        first.keyring.close()

    # while no store runs: Lan erased (a tombstone and her mark), Nam's first dossier written
    await erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester")
    await write_sealed(kafka_bootstrap, ns, keyring(), [person("TL-4", *NAM)])
    events = {}
    for record in await read_all(kafka_bootstrap, scoped(EVENTS_DOSSIER, ns).name, expect=4, idle=0.5):
        event = wire.decode(record.headers, record.value)
        assert isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, SealedApplicant)
        events[event.subject] = event

    second = await started(kept())
    try:
        assert second.applied == 3, "a restart reads what was written since: a tombstone, a mark, Nam's key"
        assert len(second.keyring) == 3
        for code, who in (("TL-2", MINH), ("TL-3", HOA), ("TL-4", NAM)):  # Minh's and Hoa's from disk (1 cached)
            event = events[code]
            assert open_applicant(second.keyring, event.id, event.data.applicant).phone == who[2]  # type: ignore[union-attr]
        with pytest.raises(Erased):
            open_applicant(second.keyring, events["TL-1"].id, events["TL-1"].data.applicant)  # type: ignore[union-attr]
        second.keyring.checkpoint({(t, 0): 10**9 for t in second.topics})  # as if the topics were made again
    finally:
        await second.stop()
        second.keyring.close()

    third = await started(kept())  # offsets past the topics' end: read again from the beginning
    try:
        assert third.applied == 6 and len(third.keyring) == 3
    finally:
        await third.stop()
        third.keyring.close()
    fourth = await started(kept({**keks, "kek-0": bytes(32)}))  # other KEKs given: started over
    try:
        assert fourth.applied == 6 and len(fourth.keyring) == 3
        with pytest.raises(Erased):
            open_applicant(fourth.keyring, events["TL-1"].id, events["TL-1"].data.applicant)  # type: ignore[union-attr]
    finally:
        await fourth.stop()
        fourth.keyring.close()
