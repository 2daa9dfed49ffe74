"""`commune-bus publish` as a source's own principal (ADR 0018): it writes the one raw topic that principal may
write, its bound topic, without being told (before, the command wrote only the shared raw topic, which refuses every
source principal: an integrator with its own credentials could not use it). The operator's publish still goes to the
shared topic, and a source naming another entry's topic is refused in one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import orjson
import pytest

from schemas.events import Family
from schemas.topics import RAW
from services.common.acls import SOURCES_FILE
from services.sources.registry import load_registry
from services.sources.topics import bound_topic, entry_of, principal, raw_topic
from tests.integrator.conftest import CLI
from tests.samples import portal_dossier
from tests.security.conftest import SecureBroker
from tests.security.test_services_secure import _read

pytestmark = pytest.mark.kafka
ENTRY = next(e for e in load_registry(SOURCES_FILE).sources if Family.DOSSIER in e.families)


def publish(broker: SecureBroker, user: str, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **broker.conn(user).environment(), "COLUMNS": "200"}
    return subprocess.run([CLI, "publish", str(path), "--family", "dossier", "--commune", "02269", *args],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.unit
def test_the_entry_of_a_source_principal_and_its_topics() -> None:
    assert entry_of(principal(ENTRY)) == ENTRY.id and entry_of("operator") is None and entry_of("source-") is None
    assert entry_of(None) is None
    assert raw_topic(Family.DOSSIER, ENTRY.id, "ns") == bound_topic(Family.DOSSIER, ENTRY, "ns").name
    assert raw_topic(Family.DOSSIER, None, "ns") == f"ns.{RAW[Family.DOSSIER].name}"


def test_a_source_principal_publishes_to_its_own_topic_and_the_operator_to_the_shared_one(
        secure_broker: SecureBroker, tmp_path: Path) -> None:
    code = "SRC-" + uuid.uuid4().hex[:8]
    path = tmp_path / "portal.ndjson"
    path.write_bytes(orjson.dumps(portal_dossier(code)) + b"\n")
    own = bound_topic(Family.DOSSIER, ENTRY).name
    shared = RAW[Family.DOSSIER].name

    unsourced = publish(secure_broker, principal(ENTRY), path)  # intake would take it as 02269's portal sync
    assert unsourced.returncode == 2 and "portal-shape records need --source" in unsourced.stderr, unsourced.stderr
    done = publish(secure_broker, principal(ENTRY), path, "--source", ENTRY.canonical_source)
    assert done.returncode == 0 and f"1 record acknowledged by {own}" in done.stderr, done.stdout + done.stderr
    admin = secure_broker.conn("admin")
    assert [r.key for r in asyncio.run(_read(admin, own)) if code.encode() in (r.value or b"")] == [b"02269"]

    # another entry that covers 02269 (the records' commune): one that does not is refused before Kafka is asked
    other = next(e for e in load_registry(SOURCES_FILE).sources if e.id != ENTRY.id and e.covers("02269"))
    refused = publish(secure_broker, principal(ENTRY), path, "--entry", other.id, "--source", other.canonical_source)
    assert refused.returncode == 1 and "TopicAuthorizationFailedError" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) <= 3, refused.stderr

    operator = publish(secure_broker, "operator", path)
    assert operator.returncode == 0 and f"1 record acknowledged by {shared}" in operator.stderr, operator.stderr
    assert sum(code.encode() in (r.value or b"") for r in asyncio.run(_read(admin, shared))) == 1
