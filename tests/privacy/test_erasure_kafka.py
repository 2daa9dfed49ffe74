"""Crypto-shredding on the real broker: erase one of two applicants; their copies no longer open, the other's do."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from schemas import wire
from schemas.deadletter import DeadLetterContext, Reason
from schemas.dossier import DossierStatusChanged
from schemas.personal import ErasureAudit, SealedApplicant
from schemas.topics import (
    DLQ_INTAKE,
    EVENTS_DOSSIER,
    KEYS_APPLICANTS,
    KEYS_DEAD_LETTERS,
    PRIVACY_AUDIT,
    PRIVACY_ERASURES,
    scoped,
)
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.privacy import crypto
from services.privacy.applicant import open_applicant
from services.privacy.crypto import Erased
from services.privacy.deadletters import open_dead_letter
from services.privacy.erase import erase_applicant, erase_cccd, live_keys
from services.privacy.intake import IntakePrivacy
from services.privacy.store import KeyStore
from tests.kafkatools import read_all
from tests.privacy.keys import PEPPER, keyring, settings
from tests.privacy.writer import person, write_sealed
from tests.samples import dumps, portal_dossier

pytestmark = pytest.mark.kafka

LAN = ("Nguyễn Thị Lan", "008123456789", "0912345678")
MINH = ("Trần Văn Minh", "001099000111", "0987654321")


async def test_erasing_one_applicant_shreds_every_copy_and_spares_the_other(kafka_bootstrap: str, unique: str) -> None:
    """Canonical events and dead letters of Lan stop opening (a running store and a fresh one); Minh's still open."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                        KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)])
    lan_raw, minh_raw = person("TL-1", *LAN), person("TL-2", *MINH)
    await write_sealed(kafka_bootstrap, ns, keyring(), [lan_raw, minh_raw, person("TL-3", *LAN)],
                       dead_letters=[lan_raw, b"not json"])
    running = KeyStore(conn, ns, keyring(), client_id="tests-keys")
    await running.start()
    try:
        canonical = await read_all(kafka_bootstrap, scoped(EVENTS_DOSSIER, ns).name, expect=3, idle=0.5)
        dead = await read_all(kafka_bootstrap, scoped(DLQ_INTAKE, ns).name, expect=2, idle=0.5)
        events = [wire.decode(r.headers, r.value) for r in canonical]
        assert all(isinstance(e, DossierStatusChanged) and isinstance(e.data.applicant, SealedApplicant)
                   for e in events)
        every_copy = b"".join((r.value or b"") + b"".join(v for _, v in r.headers) for r in canonical + dead)
        assert not [p for p in LAN + MINH if p.encode() in every_copy], "personal data in clear on a topic"
        names = {open_applicant(running.keyring, e.id, e.data.applicant).name for e in events}  # type: ignore[union-attr]
        assert names == {LAN[0], MINH[0]}

        audit = await erase_cccd(conn, ns, PEPPER, "008 123 456 789", requested_by="operator:tester")
        assert audit.keys_destroyed == 1 and audit.subject == crypto.cccd_subject(PEPPER, LAN[1])

        await _follow(running)
        fresh = KeyStore(conn, ns, keyring(), client_id="tests-keys-fresh")
        await fresh.start()
        try:
            for store in (running, fresh):
                for e in events:
                    assert isinstance(e, DossierStatusChanged) and isinstance(e.data.applicant, SealedApplicant)
                    if e.subject == "TL-2":
                        assert open_applicant(store.keyring, e.id, e.data.applicant).phone == MINH[2]
                    else:
                        with pytest.raises(Erased):
                            open_applicant(store.keyring, e.id, e.data.applicant)
                with pytest.raises(Erased):
                    open_dead_letter(store.keyring, dead[0].key, dead[0].value, dead[0].headers,
                                     source_topic="commune.raw.dossier", partition=0, offset=0)
                assert open_dead_letter(store.keyring, dead[1].key, dead[1].value, dead[1].headers,
                                        source_topic="commune.raw.dossier", partition=0,
                                        offset=1).value == b"not json"
        finally:
            await fresh.stop()
    finally:
        await running.stop()
    [record] = await read_all(kafka_bootstrap, scoped(PRIVACY_AUDIT, ns).name, expect=1, idle=0.5)
    assert ErasureAudit.model_validate_json(record.value or b"") == audit
    assert LAN[1].encode() not in (record.value or b"") and LAN[0].encode() not in (record.value or b"")


async def _follow(store: KeyStore) -> None:
    """Run the store's tail until it has applied what is committed now (as a service's supervised task would)."""
    task = asyncio.create_task(store.run())
    try:
        await store.refresh(timeout_s=30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_erasing_an_applicant_shreds_their_dead_letter_under_a_key_that_expires(kafka_bootstrap: str,
                                                                                     unique: str) -> None:
    """A rejected record naming a CCCD never seen is sealed under a key of that applicant that expires with the
    letter, on the dead-letter key topic (no permanent key); erasing the applicant shreds it for a running key store
    and a fresh one: the mark on the compacted topic reaches the key on the other."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                        KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)])
    subject = crypto.cccd_subject(PEPPER, MINH[1])
    await write_sealed(kafka_bootstrap, ns, keyring(), [], dead_letters=[person("TL-7", *MINH)])
    [key] = await read_all(kafka_bootstrap, scoped(KEYS_DEAD_LETTERS, ns).name, expect=1, idle=0.5)
    assert (key.key or b"").startswith(f"{subject}/".encode()) and b"expires_at" in (key.value or b"")
    assert await live_keys(conn, ns, subject) == set(), "no permanent key for a dead letter"
    [dead] = await read_all(kafka_bootstrap, scoped(DLQ_INTAKE, ns).name, expect=1, idle=0.5)

    def opened(store: KeyStore) -> bytes | None:
        return open_dead_letter(store.keyring, dead.key, dead.value, dead.headers, source_topic="commune.raw.dossier",
                                partition=0, offset=0).value

    running = KeyStore(conn, ns, keyring(), client_id="tests-keys")
    await running.start()
    try:
        assert opened(running) == person("TL-7", *MINH)
        await erase_cccd(conn, ns, PEPPER, MINH[1], requested_by="operator:tester")
        await _follow(running)
        fresh = KeyStore(conn, ns, keyring(), client_id="tests-keys-fresh")
        await fresh.start()
        try:
            for store in (running, fresh):
                with pytest.raises(Erased):
                    opened(store)
        finally:
            await fresh.stop()
    finally:
        await running.stop()


def test_the_cli_erases_by_cccd_and_prints_no_personal_data(kafka_bootstrap: str, unique: str) -> None:
    """`commune-bus erase --cccd` destroys every key of the subject (two racing ones too), never echoing the number."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    asyncio.run(ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                             KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)]))
    for _ in range(2):  # two intake workers, two keyrings: two keys of one subject
        asyncio.run(write_sealed(kafka_bootstrap, ns, keyring(), [person("TL-1", *LAN)]))
    subject = crypto.cccd_subject(PEPPER, LAN[1])
    assert len(asyncio.run(live_keys(conn, ns, subject))) == 2
    env = {**os.environ, "PRIVACY_PEPPER": crypto.b64(PEPPER), "KAFKA_BOOTSTRAP": kafka_bootstrap}
    done = subprocess.run([sys.executable, "-m", "services.cli.main", "erase", "--cccd", LAN[1], "--namespace", ns,
                           "--requested-by", "operator:tester"], env=env, capture_output=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output.decode(errors="replace")
    assert b"2 keys destroyed" in output and LAN[1].encode() not in output
    assert asyncio.run(live_keys(conn, ns, subject)) == set()


async def test_intake_follows_an_erasure_and_seals_later_events_under_a_new_key(kafka_bootstrap: str,
                                                                                unique: str) -> None:
    """After an erasure, intake's keyring has dropped the key: the applicant's next event gets a new, written key."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                        KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)])
    intake = IntakePrivacy(conn, ns, settings(), client_id="tests-intake")
    await intake.start(lambda name, coro: asyncio.create_task(coro, name=name))
    try:
        [first] = await write_sealed(kafka_bootstrap, ns, intake.keyring, [person("TL-1", *LAN)])
        await intake.store.refresh(timeout_s=30)
        subject = crypto.cccd_subject(PEPPER, LAN[1])
        assert intake.keyring.key_ids(subject) == [first.keys[0].key_id]
        await erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester")
        await intake.store.refresh(timeout_s=30)
        assert intake.keyring.key_ids(subject) == []
        [later] = await write_sealed(kafka_bootstrap, ns, intake.keyring, [person("TL-9", *LAN)])
        assert later.keys and later.keys[0].key_id != first.keys[0].key_id
        letter, messages = intake.seal_dead_letter(b"02269", b"{}", [], DeadLetterContext(
            reason=Reason.NOT_AN_OBJECT, field="(record)", message="m", source_topic="commune.raw.dossier",
            source_partition=1, source_offset=5, rejected_at="2026-12-01T08:00:00+00:00"))
        assert letter.value != b"{}" and dict(letter.headers)["dlq.sealed.subject"] == b"dlq:2026-12-01"
        assert [m[0] for m in messages] == [scoped(KEYS_DEAD_LETTERS, ns).name]
    finally:
        await intake.stop()


async def test_an_applicant_known_by_several_identifiers_is_erased_by_all_of_them(kafka_bootstrap: str,
                                                                                   unique: str) -> None:
    """A dossier sent without the CCCD is sealed under the phone: an erasure by the CCCD alone leaves it readable
    (what the erasure review found); naming the phone too shreds it, each identifier with its own audit record."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                        KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)])
    without_cccd = portal_dossier("TL-4", status=2, ChuHoSo=LAN[0], SoDienThoaiChuHoSo=LAN[2])
    del without_cccd["SoGiayToChuHoSo"]
    await write_sealed(kafka_bootstrap, ns, keyring(), [person("TL-1", *LAN), dumps(without_cccd)])
    phone_subject = crypto.identifier_subject(PEPPER, "phone", LAN[2])
    assert await live_keys(conn, ns, phone_subject), "the dossier without a CCCD is sealed under the phone"
    await erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester")
    assert await live_keys(conn, ns, phone_subject), "an erasure by the CCCD alone does not reach it"

    audits = await erase_applicant(conn, ns, PEPPER, [("cccd", LAN[1]), ("phone", "+84 912 345 678"),
                                                      ("phone", LAN[2])], requested_by="operator:tester")
    assert [(kind, a.subject, a.keys_destroyed) for kind, a in audits] == [
        ("cccd", crypto.cccd_subject(PEPPER, LAN[1]), 0), ("phone", phone_subject, 1)]  # one number, once
    assert await live_keys(conn, ns, phone_subject) == set()
    store = KeyStore(conn, ns, keyring(), client_id="tests-keys-several")
    await store.start()
    try:
        canonical = await read_all(kafka_bootstrap, scoped(EVENTS_DOSSIER, ns).name, expect=2, idle=0.5)
        for record in canonical:
            event = wire.decode(record.headers, record.value)
            assert isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, SealedApplicant)
            with pytest.raises(Erased):
                open_applicant(store.keyring, event.id, event.data.applicant)
    finally:
        await store.stop()


async def test_a_key_written_again_while_it_is_erased_ends_erased(kafka_bootstrap: str, unique: str) -> None:
    """A worker writes a new key's record with every transaction until its key store reads the key back; copies it
    writes after the erasure's tombstone (before it has read it) must not leave the key live: the erasure ends only
    when each key's last record is a tombstone, so the compacted topic forgets it for every future reader (before,
    the second pass skipped the keys of the first and the late copy stood as the key's last record)."""
    from schemas.dossier import Applicant
    from services.common import clients
    from services.privacy.applicant import encrypt_applicant

    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT,
                                                        PRIVACY_ERASURES)])
    maker = keyring()
    sealed, [record] = encrypt_applicant(maker, "evt-1", Applicant(name=LAN[0], id_number=LAN[1], phone=LAN[2]),
                                         ("/communes/02269/one-stop", "TL-1"))
    value, topic = record.model_dump_json().encode(), scoped(KEYS_APPLICANTS, ns).name
    store = KeyStore(conn, ns, maker, client_id="tests-maker")
    producer = clients.producer(conn, client_id="tests-maker")
    await producer.start()
    await store.start()
    following = asyncio.create_task(store.run())

    def erased() -> bool:
        try:
            maker.dek(sealed.subject, sealed.key_id)
        except Erased:
            return True
        return False

    async def worker() -> int:
        """Writes the key's record again until its store has read the tombstone, then once more (a transaction that
        was in flight): as an intake worker holding the key pending does."""
        copies = 0
        while not erased():
            await producer.send_and_wait(topic, value, key=record.record_key)
            copies += 1
            await asyncio.sleep(0.05)
        await producer.send_and_wait(topic, value, key=record.record_key)
        return copies + 1

    try:
        writing = asyncio.create_task(worker())
        audit = await erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester")
        copies = await asyncio.wait_for(writing, timeout=30)
        assert copies >= 2 and audit.keys_destroyed == 1
        assert await live_keys(conn, ns, sealed.subject) == set(), "the key's last record is a live copy"
        await producer.send_and_wait(topic, value, key=record.record_key)  # a transaction that committed later still
        assert await live_keys(conn, ns, sealed.subject) == {sealed.key_id}
        fresh = KeyStore(conn, ns, keyring(), client_id="tests-fresh")  # the subject's erasure mark refuses it
        await fresh.start()
        await fresh.stop()
        with pytest.raises(Erased):
            open_applicant(fresh.keyring, "evt-1", sealed)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await store.stop()
        await producer.stop()
