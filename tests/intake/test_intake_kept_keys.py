"""intake with its key store kept across restarts (ADR 0034, `PRIVACY_STATE_DIR`) on the real broker: SIGKILLed while
new applicants flow, restarted on the same folder, it goes on from the kept offsets; every event is published once
and every applicant opens with a keyring that reads the key topics whole (no event sealed under a key lost with the
kill)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import orjson
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
from tests.intake.test_intake_faults import COMMUNES, check_exactly_once, first_commit, produce_paced
from tests.kafkatools import read_all
from tests.privacy.keys import keyring
from tests.samples import canonical_dossier, dumps
from tests.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def applicants(n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]], str | None]]:
    """n dossier events, each of a new applicant (a phone of their own: a new data key each)."""
    out = []
    for i in range(n):
        commune = COMMUNES[i % len(COMMUNES)]
        event = {**canonical_dossier(f"evt-{i}", applicant={"name": f"Người {i}", "phone": f"09{i:08d}"}),
                 "commune": commune, "subject": f"D-{i}"}
        out.append((commune.encode(), dumps(event), [], f"evt-{i}"))
    return out


def test_intake_killed_with_a_kept_key_store_goes_on_from_it(kafka_bootstrap: str, namespace: str,
                                                              intake_topics: dict[str, str],
                                                              start_intake: StartIntake, tmp_path: Path) -> None:
    records = applicants(2000)
    raw, canonical = intake_topics[RAW[Family.DOSSIER].name], intake_topics[CANONICAL[Family.DOSSIER].name]
    state, log = tmp_path / "keys", tmp_path / "intake.log"

    async def scenario() -> None:
        feeder = asyncio.create_task(produce_paced(kafka_bootstrap, raw, records, per_second=500))
        proc = start_intake(PRIVACY_STATE_DIR=str(state))
        await first_commit(proc.http_port)
        await asyncio.sleep(1.5)  # keys read back and checkpointed meanwhile
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        start_intake(PRIVACY_STATE_DIR=str(state))
        await feeder

    asyncio.run(scenario())
    check_exactly_once(kafka_bootstrap, intake_topics, records)
    assert [p.name for p in state.iterdir() if p.is_dir()] == [f"{KEPT_PREFIX}{namespace}-intake-0"]
    starts = eventually(lambda: [line for line in _lines(log) if line.get("event") == "privacy.keys_read"][1:],
                        timeout=30, what="the restarted worker's key store read")
    assert starts[0]["from_kept"] is True, starts[0]

    async def opened() -> int:
        store = KeyStore(KafkaConnection(bootstrap=kafka_bootstrap), namespace, keyring(), client_id="tests-full")
        await store.start()
        try:
            count = 0
            for record in await read_all(kafka_bootstrap, canonical, expect=len(records), timeout=60):
                event = wire.decode(record.headers, record.value)
                assert isinstance(event, DossierStatusChanged) and isinstance(event.data.applicant, SealedApplicant)
                name = open_applicant(store.keyring, event.id, event.data.applicant).name
                assert name == f"Người {event.id.removeprefix('evt-')}"
                count += 1
            return count
        finally:
            await store.stop()
            store.keyring.close()

    assert asyncio.run(opened()) == len(records)


def _lines(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_bytes().splitlines():
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            out.append(parsed)
    return out
