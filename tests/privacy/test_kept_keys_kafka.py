"""A key store kept across restarts (ADR 0034) on the real broker: a restart reads only the key records written
since, an erasure made while it was down is honoured, and a store that no longer fits the topics is read again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from schemas import wire
from schemas.dossier import DossierStatusChanged
from schemas.personal import SealedApplicant
from schemas.topics import (
    DLQ_INTAKE,
    EVENTS_DOSSIER,
    KEYS_APPLICANTS,
    KEYS_DEAD_LETTERS,
    PRIVACY_AUDIT,
    PRIVACY_ERASURES,
    TopicSpec,
    scoped,
)
from services.common.admin import delete_topics, ensure_topics, list_topics
from services.common.settings import KafkaConnection
from services.privacy.applicant import open_applicant
from services.privacy.crypto import Erased
from services.privacy.disk import DiskKeys
from services.privacy.disk_folder import Kept
from services.privacy.erase import erase_cccd
from services.privacy.keyring import Keyring
from services.privacy.store import UNREADABLE_NOW, KeyStore
from tests.kafkatools import produce, read_all
from tests.privacy.keys import KEK, PEPPER, keyring
from tests.privacy.writer import person, write_sealed
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka

LAN = ("Nguyễn Thị Lan", "008123456789", "0912345678")
MINH = ("Trần Văn Minh", "001099000111", "0987654321")
HOA = ("Lê Thị Hoa", "002088000222", "0911222333")
NAM = ("Phạm Văn Nam", "003077000333", "0944555666")


async def test_a_kept_store_reads_only_what_was_written_since_and_honours_an_erasure_made_meanwhile(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                       KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)])
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


async def test_key_topics_made_again_with_more_records_are_read_again(kafka_bootstrap: str, unique: str,
                                                                      tmp_path: Path) -> None:
    """The key topics deleted and made again (a reset, a restore), Lan erased there and more written than the kept
    offsets: the kept store's last records read again differ, and it reads the new topics whole (review: it went on
    from its offsets, skipped the mark, and Lan's key still opened)."""
    ns, conn = f"r{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    keys = [scoped(KEYS_APPLICANTS, ns), scoped(KEYS_DEAD_LETTERS, ns)]
    await ensure_topics(conn, [*keys, *(scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, PRIVACY_AUDIT,
                                                                        PRIVACY_ERASURES))])
    keks = {"kek-1": KEK}

    def kept() -> Keyring:
        return Keyring(keks, "kek-1", PEPPER, table=DiskKeys(tmp_path, cached=1, kept=Kept.of(ns, keks, "kek-1")))

    async def started(ring: Keyring) -> KeyStore:
        store = KeyStore(conn, ns, ring, client_id="tests-keys-again")
        await store.start()
        return store

    for batch in range(3):  # the topics' first life: Lan and 29 others
        people = [person(f"A-{batch}-{i}", f"P {i}", f"0{batch}{i:010d}", f"09{batch}{i:07d}") for i in range(10)]
        if batch == 0:
            people[0] = person("TL-1", *LAN)
        await write_sealed(kafka_bootstrap, ns, keyring(), people)
    first = await started(kept())
    await first.stop()
    first.keyring.close()
    lan = next(e for e in (wire.decode(r.headers, r.value) for r in await read_all(
        kafka_bootstrap, scoped(EVENTS_DOSSIER, ns).name, expect=30, idle=0.5)) if e.subject == "TL-1")
    assert isinstance(lan, DossierStatusChanged) and isinstance(lan.data.applicant, SealedApplicant)

    await delete_topics(conn, [t.name for t in keys])
    await eventually_async(lambda: _gone(conn, {t.name for t in keys}), timeout=60, what="key topics deleted")
    await eventually_async(lambda: _made(conn, keys), timeout=60, what="key topics made again")
    await erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester")
    for batch in range(6):
        await write_sealed(kafka_bootstrap, ns, keyring(), [
            person(f"B-{batch}-{i}", f"Q {i}", f"1{batch}{i:010d}", f"08{batch}{i:07d}") for i in range(10)])

    full = await started(keyring())
    second = await started(kept())
    try:
        assert second.applied == full.applied and len(second.keyring) == len(full.keyring) == 60
        with pytest.raises(Erased):
            open_applicant(second.keyring, lan.id, lan.data.applicant)
    finally:
        for store in (second, full):
            await store.stop()
            store.keyring.close()


async def test_a_key_record_no_reader_can_read_is_remembered_not_read_again_at_every_start(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """A key record refused by its bytes (an expiry out of bounds, audit 2026-12-04) on the compacted topic: counted
    and skipped, and a kept store's next start goes on from its offsets (it read both topics whole at every start, for
    as long as the topic kept the record), the key still held unreadable, the gauge behind KeyRecordsUnreadable set."""
    ns, conn = f"u{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                       KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)])
    keks = {"kek-1": KEK}

    async def started() -> KeyStore:
        ring = Keyring(keks, "kek-1", PEPPER, table=DiskKeys(tmp_path, cached=1, kept=Kept.of(ns, keks, "kek-1")))
        store = KeyStore(conn, ns, ring, client_id="tests-keys-refused")
        await store.start()
        return store

    await write_sealed(kafka_bootstrap, ns, keyring(), [person("TL-1", *LAN)])
    refused = {"subject": "a-x", "key_id": "k-x", "kek_id": "kek-1", "wrapped": "AAAA",
               "created_at": "2026-12-01T08:00:00Z", "expires_at": "9999-12-31T23:00:00-05:00"}
    await produce(kafka_bootstrap, scoped(KEYS_APPLICANTS, ns).name, [(b"a-x/k-x", json.dumps(refused).encode(), [])])
    first = await started()
    try:
        assert (first.applied, first.unreadable, len(first.keyring)) == (2, 1, 1)
    finally:
        await first.stop()
        first.keyring.close()
    UNREADABLE_NOW.set(0)
    second = await started()
    try:
        assert (second.applied, len(second.keyring), second.keyring.unreadable_keys()) == (0, 1, 1)
        assert UNREADABLE_NOW._value.get() == 1
    finally:
        await second.stop()
        second.keyring.close()


async def _gone(conn: KafkaConnection, names: set[str]) -> bool:
    return not names & await list_topics(conn)


async def _made(conn: KafkaConnection, specs: list[TopicSpec]) -> bool:
    try:
        await ensure_topics(conn, specs)
    except KafkaError:  # still being deleted
        return False
    return True

