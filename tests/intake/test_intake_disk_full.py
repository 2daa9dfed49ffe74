"""intake with its key store kept across restarts (ADR 0034, `PRIVACY_STATE_DIR`) on a disk that fills while new
applicants flow (a per-file size limit: RLIMIT_FSIZE, which Python's SIGXFSZ-ignoring child inherits; RocksDB's
writes past it fail with EFBIG as with ENOSPC), on the real broker: the worker ends (exit 1) with a line naming the
store's file and the cause; restarted with room, it goes on from its kept store, and every event is published once,
none dead-lettered, every applicant opening with a keyring that reads the key topics whole (helper `disk`)."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

import pytest

from schemas import wire
from schemas.dossier import DossierStatusChanged
from schemas.events import Family
from schemas.personal import SealedApplicant
from schemas.topics import CANONICAL, RAW
from services.common.settings import KafkaConnection
from services.privacy.applicant import open_applicant
from services.privacy.disk_folder import KEPT_PREFIX
from services.privacy.store import KeyStore
from tests.intake.conftest import StartIntake
from tests.intake.test_intake_faults import check_exactly_once, produce_paced
from tests.intake.test_intake_kept_keys import _lines, applicants
from tests.kafkatools import read_all
from tests.privacy.keys import keyring
from tests.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]
LIMIT = 256 * 1024
"""Bytes a file of the first worker may grow to: its key store's write-ahead log passes it within a few hundred new
applicants' keys read back; its own log does not."""


def test_intake_on_a_full_disk_ends_naming_the_store_then_goes_on_from_it(kafka_bootstrap: str, namespace: str,
                                                                          intake_topics: dict[str, str],
                                                                          start_intake: StartIntake,
                                                                          tmp_path: Path) -> None:
    records = applicants(2000)
    raw = intake_topics[RAW[Family.DOSSIER].name]
    state, log = tmp_path / "keys", tmp_path / "intake.log"
    folder = state / f"{KEPT_PREFIX}{namespace}-intake-0"

    async def scenario() -> int:
        feeder = asyncio.create_task(produce_paced(kafka_bootstrap, raw, records, per_second=500))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))
        try:
            full = start_intake(PRIVACY_STATE_DIR=str(state))  # (the child keeps the limit)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        code = await asyncio.to_thread(full.wait, 120)
        start_intake(PRIVACY_STATE_DIR=str(state))
        await feeder
        return code

    assert asyncio.run(scenario()) == 1
    crashed = [line for line in _lines(log) if line.get("event") == "service.crashed"]
    assert len(crashed) == 1, crashed
    assert str(crashed[0].get("file", "")).startswith(f"{folder}/"), crashed[0]
    assert crashed[0].get("reason") == "IO error: File too large", crashed[0]
    check_exactly_once(kafka_bootstrap, intake_topics, records)  # none dead-lettered, none lost or twice
    starts = eventually(lambda: [line for line in _lines(log) if line.get("event") == "privacy.keys_read"][1:],
                        timeout=30, what="the restarted worker's key store read")
    assert starts[0]["from_kept"] is True, starts[0]
    canonical = intake_topics[CANONICAL[Family.DOSSIER].name]
    assert asyncio.run(opened(kafka_bootstrap, namespace, canonical)) == len(records)


async def opened(bootstrap: str, namespace: str, canonical: str) -> int:
    """How many canonical events' applicants open with a keyring that reads the key topics whole."""
    store = KeyStore(KafkaConnection(bootstrap=bootstrap), namespace, keyring(), client_id="tests-full")
    await store.start()
    try:
        count = 0
        for record in await read_all(bootstrap, canonical, expect=2000, timeout=60):
            event = wire.decode(record.headers, record.value)
            assert isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, SealedApplicant)
            assert open_applicant(store.keyring, event.id, event.data.applicant).name == \
                f"Người {event.id.removeprefix('evt-')}"
            count += 1
        return count
    finally:
        await store.stop()
        store.keyring.close()
