"""The backbone on the simulator's personal data: no topic but the raw ones, no log, no metric holds it in clear;
after an erasure that applicant's copies stay shut while other applicants are still notified (issue 12)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import wire
from schemas.dossier import DossierStatusChanged
from schemas.events import Family
from schemas.personal import SEALED_SUBJECT_HEADER, SealedApplicant
from schemas.portal import APPLICANT_FIELDS
from schemas.topics import CANONICAL, DLQ_INTAKE, RAW, TOPICS, Group, Kind, group_id, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from services.privacy import crypto
from services.privacy.applicant import open_applicant
from services.privacy.crypto import Erased
from services.privacy.deadletters import open_dead_letter
from services.privacy.erase import erase_cccd
from services.privacy.store import KeyStore
from tests.kafkatools import ROOT, free_port, produce, read_all, start_service, stop_service
from tests.notify.conftest import PRIVACY_ENV, MailSink, StartNotify, caught_up, group_caught_up
from tests.privacy.keys import PEPPER, keyring
from tests.samples import COMMUNE, dumps, portal_dossier, recent
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]
PERSONAL = ("name", "id_number", "phone", "email", "address")


def _personal(record_value: bytes | None) -> dict[str, str]:
    """The applicant fields of one raw dossier record, whatever its shape (values of 6+ characters only)."""
    try:
        obj: Any = orjson.loads(record_value or b"")
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(obj, dict):
        return {}
    group = obj.get("data", {}).get("applicant") if isinstance(obj.get("data"), dict) else obj.get("applicant")
    if not isinstance(group, dict):
        group = {f: obj.get(portal) for f, portal in APPLICANT_FIELDS.items()}
    return {f: v for f in PERSONAL if isinstance(v := group.get(f), str) and len(v) >= 6}


def _logs_and_metrics(logs: Path, ports: dict[str, int]) -> dict[str, bytes]:
    """Every service log of the test, and every service's /metrics page, by where they come from."""
    found = {f"log:{p.name}": p.read_bytes() for p in logs.glob("*.log")}
    for name, port in ports.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            found[f"metrics:{name}"] = bytes(resp.read())
    return found


async def test_no_clear_personal_data_outside_raw_topics_and_erasure_shuts_one_applicant(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify, fake: FakeProviders,
        smtp: tuple[MailSink, int], tmp_path: Path) -> None:
    """Simulator -> intake -> notify + metrics: 0 clear hits off the raw topics; erased data shut, others told."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    await ensure_topics(conn, [scoped(t, namespace) for t in TOPICS])
    ports = {name: free_port() for name in ("intake", "metrics", "notify")}
    services = [
        start_service("services.intake", {"KAFKA_BOOTSTRAP": kafka_bootstrap, "INTAKE_NAMESPACE": namespace,
                                          "INTAKE_HTTP_PORT": str(ports["intake"]), **PRIVACY_ENV},
                      tmp_path / "intake.log"),
        start_service("services.metrics", {"KAFKA_BOOTSTRAP": kafka_bootstrap, "METRICS_NAMESPACE": namespace,
                                           "METRICS_HTTP_PORT": str(ports["metrics"]),
                                           "METRICS_STATE_DIR": str(tmp_path / "state")}, tmp_path / "metrics.log"),
    ]
    try:
        start_notify(NOTIFY_HTTP_PORT=str(ports["notify"]), NOTIFY_SUBSCRIBERS_FILE="")
        argv = [sys.executable, "-m", "services.simulator", "--province", "08", "--rate", "40", "--duration", "6",
                "--seed", "7", "--namespace", namespace, "--bootstrap", kafka_bootstrap, "--family", "dossier"]
        simulator = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, capture_output=True, timeout=120,
                                            check=False)
        assert simulator.returncode == 0, simulator.stderr.decode(errors="replace")[-2000:]
        raw_topic = scoped(RAW[Family.DOSSIER], namespace).name
        raw = await read_all(kafka_bootstrap, raw_topic, idle=1)
        people = [p for rec in raw if (p := _personal(rec.value))]
        values = {v.encode() for p in people for v in p.values()}
        assert len(people) > 20 and len(values) > 50, "the simulator seeded personal data"
        await group_caught_up(kafka_bootstrap, group_id(Group.INTAKE, namespace),
                              [scoped(RAW[f], namespace).name for f in Family], timeout=180)
        await caught_up(kafka_bootstrap, namespace)
        await eventually_async(lambda: len(fake.accepted) > 0, timeout=30, what="notifications sent")

        # 1. nothing in clear: every non-raw topic (keys, values, headers), every service log, every /metrics
        names = [scoped(spec, namespace).name for spec in TOPICS if spec.kind is not Kind.RAW]
        # read side by side: one after the other, a consumer's start and idle wait each, 19 topics took 9 s
        found = await asyncio.gather(*(read_all(kafka_bootstrap, name, idle=0.3) for name in names))
        copies = {name: b"".join((r.key or b"") + (r.value or b"") + b"".join(v for _, v in r.headers) for r in records)
                  for name, records in zip(names, found, strict=True)}
        copies |= await asyncio.to_thread(_logs_and_metrics, tmp_path, ports)
        hits = sorted({where for where, text in copies.items() for v in values if v in text})
        assert hits == [], f"personal data in clear in {hits}"
        assert copies[scoped(DLQ_INTAKE, namespace).name], "the simulator's invalid share reached the DLQ"

        # 2. erase one applicant who was notified; their copies no longer open, the others' do
        erased = next(p for p in people if "id_number" in p and "phone" in p
                      and any(r.body.get("to") == p["phone"] for r in fake.accepted.values()))
        await erase_cccd(conn, namespace, PEPPER, erased["id_number"], requested_by="operator:tester")
        subject = crypto.cccd_subject(PEPPER, erased["id_number"])
        store = KeyStore(conn, namespace, keyring(), client_id="tests-scan-keys")
        await store.start()
        try:
            shut = opened = 0
            for rec in await read_all(kafka_bootstrap, scoped(CANONICAL[Family.DOSSIER], namespace).name, idle=0.3):
                event = wire.decode(rec.headers, rec.value)
                assert isinstance(event, DossierStatusChanged)
                sealed = event.data.applicant
                if not isinstance(sealed, SealedApplicant):
                    continue
                if sealed.subject == subject:
                    with pytest.raises(Erased):
                        open_applicant(store.keyring, event.id, sealed)
                    shut += 1
                else:
                    open_applicant(store.keyring, event.id, sealed)
                    opened += 1
            assert shut >= 1 and opened >= 1
            for rec in await read_all(kafka_bootstrap, scoped(DLQ_INTAKE, namespace).name, idle=0.3):
                h = dict(rec.headers)
                if h.get(SEALED_SUBJECT_HEADER) == subject.encode():
                    with pytest.raises(Erased):
                        open_dead_letter(store.keyring, rec.key, rec.value, rec.headers,
                                         source_topic=h["dlq.source.topic"].decode(),
                                         partition=int(h["dlq.source.partition"]), offset=int(h["dlq.source.offset"]))
        finally:
            await store.stop()

        # 3. notifications for other applicants still go out
        before = len(fake.accepted)
        await produce(kafka_bootstrap, raw_topic, [(COMMUNE.encode(), dumps(recent(portal_dossier(
            "TL-261201-0999", status=2, SoDienThoaiChuHoSo="0933000999", SoGiayToChuHoSo="079200000999"))),
            [("commune-code", COMMUNE.encode())])])
        await eventually_async(lambda: any(r.body.get("to") == "0933000999" for r in fake.accepted.values()),
                               timeout=60, interval=0.2, what="another applicant's SMS after the erasure")
        assert len(fake.accepted) > before
    finally:
        for proc in services:
            stop_service(proc)
