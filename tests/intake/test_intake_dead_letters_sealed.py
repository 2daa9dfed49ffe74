"""Intake's dead letters on the real broker keep no personal data in clear, in the key and headers too (ADR 0026):
a raw record keyed by a CCCD, with personal headers, is dead-lettered sealed whole; `dlq replay` restores the original
record exactly; once the applicant is erased, the CLI says the dead letter is unreadable instead of replaying it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from schemas.events import Family
from schemas.topics import DLQ_INTAKE, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES, RAW, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.privacy.erase import erase_cccd
from tests.intake.conftest import StartIntake
from tests.kafkatools import ROOT, produce, read_all, stop_service
from tests.privacy.keys import PEPPER
from tests.samples import dumps, portal_dossier

pytestmark = pytest.mark.kafka

NAME, CCCD, PHONE = "Nguyễn Thị Lan", "008123456789", "0912345678"
TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"
PERSONAL = (NAME.encode(), CCCD.encode(), PHONE.encode(), b"lan@example.vn")


def _cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "COLUMNS": "200"}  # one line per message
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False)


def test_a_dead_letter_keyed_by_a_cccd_is_sealed_whole_replayed_exactly_and_unreadable_once_erased(
    kafka_bootstrap: str, namespace: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """No CCCD, phone or name in the DLQ record's key, header names or values, or value; replay gives the original
    key, headers (a null value and non-UTF-8 bytes among them) and value back; after the erasure, `dlq list` and
    `dlq replay` count it as erased (unreadable) and replay nothing."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    raw_topic, dlq_topic = intake_topics[RAW[Family.DOSSIER].name], intake_topics[DLQ_INTAKE.name]
    value = dumps(portal_dossier("TL-PII-0001", status=2, ChuHoSo=NAME, SoGiayToChuHoSo=CCCD, SoDienThoaiChuHoSo=PHONE))
    headers: list[tuple[str, bytes | None]] = [  # no commune-code header: dead-lettered as missing_commune_header
        ("x-applicant-phone", PHONE.encode()), ("ce_subject", CCCD.encode()), ("x-note", None),
        ("x-raw", b"\xff\xfe" + b"lan@example.vn"), ("ce_traceparent", TRACEPARENT.encode())]
    asyncio.run(ensure_topics(conn, [scoped(t, namespace) for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS,
                                                                    PRIVACY_AUDIT, PRIVACY_ERASURES)]))
    intake = start_intake()
    try:
        asyncio.run(produce(kafka_bootstrap, raw_topic, [(CCCD.encode(), value, headers)]))  # type: ignore[list-item]
        [original] = asyncio.run(read_all(kafka_bootstrap, raw_topic, expect=1, idle=0.5))
        [letter] = asyncio.run(read_all(kafka_bootstrap, dlq_topic, expect=1, timeout=60))
    finally:
        stop_service(intake)

    stored = (letter.key or b"") + (letter.value or b"") + b"".join(
        name.encode() + (v or b"") for name, v in letter.headers)
    assert [p for p in PERSONAL if p in stored] == [], "personal data in clear on the dead-letter topic"
    assert letter.key is None, "no commune in the record's key or headers: the dead letter has no key"
    assert dict(letter.headers)["dlq.reason"] == b"missing_commune_header"
    assert "ce_traceparent" not in dict(letter.headers), "a producer's trace id may hold a number: sealed only"

    replayed = _cli(kafka_bootstrap, "dlq", "replay", "--namespace", namespace)
    assert replayed.returncode == 0 and "replayed 1 dead letter" in replayed.stderr, replayed.stderr
    again = [r for r in asyncio.run(read_all(kafka_bootstrap, raw_topic, expect=2, idle=0.5))
             if any(k == "dlq.replayed" for k, _ in r.headers)]
    assert dict(letter.headers)["dlq.source.written-at"] == str(original.timestamp).encode()
    assert [(r.key, r.value, list(r.headers)) for r in again] == [
        (CCCD.encode(), value, [*headers, ("dlq.replayed", f"{letter.partition}:{letter.offset}".encode()),
                                ("intake.written-at", str(original.timestamp).encode())])]  # the broker's (ADR 0043)

    audit = asyncio.run(erase_cccd(conn, namespace, PEPPER, CCCD, requested_by="operator:tester"))
    assert audit.keys_destroyed >= 1
    for command in (("dlq", "list"), ("dlq", "replay")):
        done = _cli(kafka_bootstrap, *command, "--namespace", namespace)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert "1 erased or expired" in output, output
        assert not [p for p in PERSONAL if p.decode() in output]
    assert "replayed 0 dead letters" in done.stderr
