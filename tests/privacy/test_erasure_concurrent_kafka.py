"""Erasures at the same time (two gateway requests, two gateway replicas, the CLI beside the gateway) on the real
broker: none fences another, each leaves its tombstones, its erasure mark and its audit record."""

from __future__ import annotations

import asyncio

import pytest

from schemas.personal import ERASED_MARK, ErasureAudit
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
from services.privacy.erase import erase_cccd, live_keys
from tests.kafkatools import read_all
from tests.privacy.keys import PEPPER, keyring
from tests.privacy.writer import person, write_sealed

pytestmark = pytest.mark.kafka

APPLICANTS = [(f"Người {n}", f"0010990001{n:02d}", f"09123456{n:02d}") for n in range(1, 6)]


async def test_concurrent_erasures_from_both_doors_all_complete(kafka_bootstrap: str, unique: str) -> None:
    """Five erasures of five applicants at once, by the CLI and the gateway, all commit: every key tombstoned, every
    subject marked erased, five audit records (with one transactional id for all, each start fenced the others)."""
    ns, conn = f"p{unique}", KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, ns) for t in (EVENTS_DOSSIER, DLQ_INTAKE, KEYS_APPLICANTS,
                                                        KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES)])
    accepted = await write_sealed(kafka_bootstrap, ns, keyring(),
                                  [person(f"TL-{n}", *who) for n, who in enumerate(APPLICANTS, start=1)])
    subjects = [crypto.cccd_subject(PEPPER, cccd) for _, cccd, _ in APPLICANTS]
    keys = {a.keys[0].subject: a.keys[0].key_id for a in accepted}
    assert set(keys) == set(subjects)

    audits = await asyncio.gather(*(
        erase_cccd(conn, ns, PEPPER, cccd, requested_by=f"operator:o{n}", via=("cli", "gateway")[n % 2])
        for n, (_, cccd, _) in enumerate(APPLICANTS)))

    assert [(a.subject, a.keys_destroyed) for a in audits] == [(s, 1) for s in subjects]
    for subject in subjects:
        assert await live_keys(conn, ns, subject) == set()
    records = await read_all(kafka_bootstrap, scoped(KEYS_APPLICANTS, ns).name, expect=3 * len(subjects), idle=0.5)
    last = {(r.key or b"").decode(): r.value for r in records}
    for subject in subjects:
        assert last[f"{subject}/{keys[subject]}"] is None, "the key's last record is its tombstone"
        assert last[f"{subject}/{ERASED_MARK}"] is not None, "the subject's erasure mark"
    written = await read_all(kafka_bootstrap, scoped(PRIVACY_AUDIT, ns).name, expect=len(subjects), idle=0.5)
    assert sorted((ErasureAudit.model_validate_json(r.value or b"") for r in written), key=lambda a: a.subject) == \
        sorted(audits, key=lambda a: a.subject)
