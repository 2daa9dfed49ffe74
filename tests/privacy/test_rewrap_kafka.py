"""Retiring a key-encryption key on the real broker: after `keys rewrap`, keyrings given only the new KEK open every
value sealed before; an erased applicant's key is never written again, not even by a re-wrap an erasure races."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from schemas import wire
from schemas.dossier import DossierStatusChanged
from schemas.personal import KeyRecord, SealedApplicant
from schemas.topics import (
    DLQ_INTAKE,
    EVENTS_DOSSIER,
    KEYS_APPLICANTS,
    KEYS_DEAD_LETTERS,
    PRIVACY_AUDIT,
    PRIVACY_ERASURES,
    scoped,
)
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.privacy import crypto, rewrap
from services.privacy.applicant import open_applicant
from services.privacy.crypto import Erased
from services.privacy.deadletters import open_dead_letter
from services.privacy.erase import erase_cccd, live_keys
from services.privacy.key_records import encoded
from services.privacy.keyring import Keyring
from services.privacy.store import KeyStore
from tests.kafkatools import read_all
from tests.privacy.keys import KEK, NOW, PEPPER, keyring
from tests.privacy.writer import person, write_sealed

pytestmark = pytest.mark.kafka

KEK2 = bytes(range(100, 132))
KEKS = {"kek-1": KEK, "kek-2": KEK2}
LAN = ("Nguyễn Thị Lan", "008123456789", "0912345678")
MINH = ("Trần Văn Minh", "001099000111", "0987654321")
HOA = ("Lê Thị Hoa", "038190000222", "0977000111")


def _topics(ns: str) -> list[str]:
    return [scoped(t, ns).name for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS)]


async def _setup(conn: KafkaConnection, ns: str) -> None:
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                        KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)])


async def _new_kek_store(conn: KafkaConnection, ns: str) -> KeyStore:
    """A key store read to the end by a keyring given only kek-2: every service once kek-1 is retired."""
    store = KeyStore(conn, ns, Keyring({"kek-2": KEK2}, "kek-2", PEPPER, clock=lambda: NOW),
                     client_id="tests-kek-2")
    await store.start()
    return store


def _cli(bootstrap: str, ns: str, *args: str, old_keks: str = f"kek-1:{crypto.b64(KEK)}",
         ) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PRIVACY_KEK": crypto.b64(KEK2), "PRIVACY_KEK_ID": "kek-2", "PRIVACY_OLD_KEKS": old_keks,
           "KAFKA_BOOTSTRAP": bootstrap}
    return subprocess.run([sys.executable, "-m", "services.cli.main", "keys", "rewrap", "--namespace", ns, *args],
                          env=env, capture_output=True, timeout=120, check=False)


async def _records_of(bootstrap: str, topic: str, key: bytes) -> list[bytes | None]:
    return [r.value for r in await read_all(bootstrap, topic, idle=0.5) if r.key == key]


async def test_after_the_rewrap_the_new_kek_alone_opens_everything_and_erased_keys_stay_erased(
        kafka_bootstrap: str, unique: str) -> None:
    """Events and a dead letter sealed under kek-1 keys open with a kek-2-only keyring after `keys rewrap`; an erased
    applicant whose key a late worker wrote again after the erasure is not re-wrapped (Erased with kek-2); a second
    run finds nothing to do; `--dry-run` writes nothing; no run prints a subject."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await _setup(conn, ns)
    applicants, dead_letters = _topics(ns)
    lan, minh = await write_sealed(kafka_bootstrap, ns, keyring(), [person("TL-1", *LAN), person("TL-2", *MINH)],
                                   dead_letters=[person("TL-3", *HOA)])
    await erase_cccd(conn, ns, PEPPER, MINH[1], requested_by="operator:tester")
    [minh_key] = minh.keys
    producer = clients.producer(conn, client_id="tests-late-worker")  # a worker's copy after the erasure ended
    await producer.start()
    try:
        await producer.send_and_wait(applicants, encoded(minh_key), key=minh_key.record_key)
    finally:
        await producer.stop()
    before = len(await read_all(kafka_bootstrap, applicants, idle=0.5))

    dry = _cli(kafka_bootstrap, ns, "--dry-run")
    assert dry.returncode == 0, dry.stderr.decode(errors="replace")
    assert f"{applicants}: 1 would re-wrap, 1 skipped (erased or expired), 0 unreadable".encode() in dry.stdout
    assert len(await read_all(kafka_bootstrap, applicants, idle=0.5)) == before

    report = await rewrap.rewrap_keys(conn, ns, KEKS, "kek-2", now=NOW)
    assert {t: dict(c) for t, c in report.plan.counts.items()} == {
        applicants: {"rewrapped": 1, "erased": 1}, dead_letters: {"rewrapped": 1}}
    assert report.tombstoned == 0
    minh_copies = await _records_of(kafka_bootstrap, applicants, minh_key.record_key)
    assert [KeyRecord.model_validate_json(v).kek_id if v else None for v in minh_copies] == ["kek-1", None, "kek-1"]

    store = await _new_kek_store(conn, ns)
    try:
        events = [wire.decode(r.headers, r.value) for r in
                  await read_all(kafka_bootstrap, scoped(EVENTS_DOSSIER, ns).name, expect=2, idle=0.5)]
        for event in events:
            assert isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, SealedApplicant)
            if event.data.applicant.subject == lan.keys[0].subject:
                assert open_applicant(store.keyring, event.id, event.data.applicant).name == LAN[0]
            else:
                with pytest.raises(Erased):
                    open_applicant(store.keyring, event.id, event.data.applicant)
        [letter] = await read_all(kafka_bootstrap, scoped(DLQ_INTAKE, ns).name, expect=1, idle=0.5)
        assert open_dead_letter(store.keyring, letter.key, letter.value, letter.headers,
                                source_topic="commune.raw.dossier", partition=0,
                                offset=0).value == person("TL-3", *HOA)
    finally:
        await store.stop()

    again = _cli(kafka_bootstrap, ns)
    assert again.returncode == 0, again.stderr.decode(errors="replace")
    assert f"{applicants}: 0 re-wrapped".encode() in again.stdout
    assert f"{dead_letters}: 0 re-wrapped".encode() in again.stdout
    for done in (dry, again):
        said = done.stdout + done.stderr
        assert not [s for s in (lan.keys[0].subject, minh_key.subject) if s.encode() in said]


async def test_a_key_erased_between_the_rewraps_read_and_its_write_is_tombstoned_after_its_copy(
        kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An erasure that lands after the rewrap read the key topics: its re-wrapped copy follows the tombstone, so the
    rewrap reads the topics again and tombstones it; the key's last record is a tombstone, Erased with kek-2."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await _setup(conn, ns)
    [lan] = await write_sealed(kafka_bootstrap, ns, keyring(), [person("TL-1", *LAN)])
    [key] = lan.keys
    read = rewrap.read_key_log
    reads = 0

    async def read_then_erase(conn: KafkaConnection, namespace: str) -> rewrap.KeyLog:
        nonlocal reads
        log = await read(conn, namespace)
        reads += 1
        if reads == 1:
            await erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester")
        return log

    monkeypatch.setattr(rewrap, "read_key_log", read_then_erase)
    report = await rewrap.rewrap_keys(conn, ns, KEKS, "kek-2", now=NOW)
    assert report.plan.count("rewrapped") == 1 and report.tombstoned == 1
    copies = await _records_of(kafka_bootstrap, _topics(ns)[0], key.record_key)
    assert [KeyRecord.model_validate_json(v).kek_id if v else None for v in copies] == ["kek-1", None, "kek-2", None]
    assert await live_keys(conn, ns, key.subject) == set()
    store = await _new_kek_store(conn, ns)
    await store.stop()
    with pytest.raises(Erased):
        store.keyring.dek(key.subject, key.key_id)


def test_a_key_under_a_kek_not_given_is_counted_in_one_line_and_the_exit_status(kafka_bootstrap: str,
                                                                                unique: str) -> None:
    """A key record under kek-0 (not in PRIVACY_OLD_KEKS) is left as it is, counted: exit 1, one line, no crash."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    asyncio.run(_setup(conn, ns))
    other = Keyring({"kek-0": bytes(32)}, "kek-0", PEPPER, clock=lambda: NOW)
    asyncio.run(write_sealed(kafka_bootstrap, ns, other, [person("TL-1", *LAN)]))
    done = _cli(kafka_bootstrap, ns)
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    assert f"{_topics(ns)[0]}: 0 re-wrapped, 0 skipped (erased or expired), 1 unreadable".encode() in done.stdout
    assert len(done.stderr.decode().strip().splitlines()) == 1 and b"1 key records not readable" in done.stderr
