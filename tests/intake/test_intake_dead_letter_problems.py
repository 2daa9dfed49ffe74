"""On the real broker, a raw record with several bad fields is one dead letter naming them all (`dlq.problems`), none
of their values in clear; past `MAX_PROBLEMS`, 20 listed and one counting the rest; `dlq list` shows them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import orjson
import pytest

from schemas.deadletter import MAX_PROBLEMS, Header
from schemas.events import Family
from schemas.topics import DLQ_INTAKE, KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES, RAW, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests.intake.conftest import StartIntake
from tests.intake.test_dead_letter_problems import PERSONAL, personal_record
from tests.kafkatools import ROOT, produce, read_all, stop_service
from tests.samples import HDR, canonical_dossier, dumps, with_data

pytestmark = pytest.mark.kafka


def _cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False)


def test_every_problem_of_a_record_is_in_its_one_dead_letter_and_no_value_in_clear(
    kafka_bootstrap: str, namespace: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """A structured record with 3 bad fields, a portal record with its applicant's name, CCCD, phone and e-mail each
    bad, and a structured one with 100 unknown members: one dead letter each, listing 3, 4, and 20 fields and one
    entry counting the 80 others; no name, number or address anywhere in the stored letters; `dlq list` and `--json`
    show every problem."""
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    raw_topic, dlq_topic = intake_topics[RAW[Family.DOSSIER].name], intake_topics[DLQ_INTAKE.name]
    asyncio.run(ensure_topics(conn, [scoped(t, namespace) for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS,
                                                                    PRIVACY_AUDIT, PRIVACY_ERASURES)]))
    three = with_data(canonical_dossier("evt-three"), paid_online="maybe", digitised="perhaps", status=99)
    many = canonical_dossier("evt-many")
    many["data"] = {**many["data"], **{f"extra_{i}": i for i in range(100)}}
    intake = start_intake()
    try:
        asyncio.run(produce(kafka_bootstrap, raw_topic, [(b"02269", dumps(three), []),
                                                         (b"02269", personal_record(), HDR),
                                                         (b"02269", dumps(many), [])]))
        letters = asyncio.run(read_all(kafka_bootstrap, dlq_topic, expect=3, timeout=60))
    finally:
        stop_service(intake)

    assert len(letters) == 3, "one dead letter a record"
    by_field = {dict(r.headers)["dlq.field"]: r for r in letters}
    bad, personal, counted = by_field[b"data.status"], by_field[b"ChuHoSo"], by_field[b"data.extra_0"]
    assert [(e["reason"], e["field"]) for e in orjson.loads(dict(bad.headers)[Header.PROBLEMS])] == [
        ("unknown_status", "data.status"), ("invalid_field", "data.paid_online"), ("invalid_field", "data.digitised")]
    entries = orjson.loads(dict(personal.headers)[Header.PROBLEMS])
    assert [(e["reason"], e["field"]) for e in entries] == [
        ("invalid_field", f) for f in ("ChuHoSo", "SoGiayToChuHoSo", "SoDienThoaiChuHoSo", "EmailChuHoSo")]
    stored = b"".join((r.key or b"") + (r.value or b"") + b"".join(k.encode() + (v or b"") for k, v in r.headers)
                      for r in letters)
    assert [p for p in PERSONAL if p.encode() in stored] == [], "personal data in clear on the dead-letter topic"

    many_entries = orjson.loads(dict(counted.headers)[Header.PROBLEMS])
    assert len(many_entries) == MAX_PROBLEMS + 1
    assert [e["field"] for e in many_entries[:-1]] == [f"data.extra_{i}" for i in range(MAX_PROBLEMS)]
    assert many_entries[-1]["field"] == "(record)" and many_entries[-1]["message"].startswith("80 more problems")

    rows = [json.loads(line) for line in _cli(kafka_bootstrap, "dlq", "list", "--json", "--namespace",
                                              namespace).stdout.splitlines()]
    assert sorted(len(row["problems"]) for row in rows) == [3, 4, MAX_PROBLEMS + 1]
    table = _cli(kafka_bootstrap, "dlq", "list", "--namespace", namespace)
    assert table.returncode == 0, table.stderr
    for field in ("SoGiayToChuHoSo", "EmailChuHoSo", "data.extra_19", "80 more problems"):
        assert field in table.stdout, table.stdout
    assert not [p for p in PERSONAL if p in table.stdout + table.stderr]
