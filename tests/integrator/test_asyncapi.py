"""The AsyncAPI 3.0 document: generated from the registry, committed, and accepted by the official parser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from schemas import asyncapi
from schemas.events import EVENT_TYPES
from schemas.snapshot import COMMUNE_SNAPSHOT
from schemas.topics import METRICS_SNAPSHOTS, NOTIFY_STATUS, TOPICS, Kind
from services.sources.topics import BOUND

HERE = Path(__file__).resolve().parent / "asyncapi"


def _parser_ready() -> Path:
    """Install @asyncapi/parser from the committed lock file on first use; returns the validator script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to run the official AsyncAPI parser (apt-get install nodejs npm)"
    if not (HERE / "node_modules/@asyncapi/parser/package.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True, timeout=300)
    return HERE / "validate.mjs"


def _parse(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(_parser_ready()), str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.unit
def test_committed_document_is_generated_output() -> None:
    """schemas/asyncapi.yaml is exactly what `python -m schemas.asyncapi` writes (no hand edits, no drift)."""
    assert asyncapi.COMMITTED.read_text(encoding="utf-8") == asyncapi.render()


@pytest.mark.unit
def test_every_topic_and_event_type_is_in_the_document() -> None:
    """Each registry topic is a channel with its partitions; each event type a binary-mode message with its ce_type,
    and so is the commune snapshot; the status and snapshot topics name their messages (downstream audit: both were
    'internal or not-yet-specified', with no schema)."""
    doc = asyncapi.document()
    by_address = {c["address"]: c for c in doc["channels"].values()}
    raw = {t.name for t in TOPICS if t.kind is Kind.RAW}
    assert set(by_address) == {t.name for t in TOPICS} | {f"{name}{BOUND}{{sourceId}}" for name in raw}
    for t in TOPICS:
        assert by_address[t.name]["bindings"]["kafka"]["partitions"] == t.partitions
    ce_types = {m["headers"]["properties"]["ce_type"]["const"] for m in doc["components"]["messages"].values()
                if "ce_type" in m.get("headers", {}).get("properties", {})}
    assert ce_types == {*EVENT_TYPES, COMMUNE_SNAPSHOT}
    for topic, message in ((NOTIFY_STATUS, "notificationStatus"), (METRICS_SNAPSHOTS, "communeSnapshot")):
        assert list(by_address[topic.name]["messages"]) == [message]
        assert doc["components"]["messages"][message]["payload"]["$ref"].startswith("#/components/schemas/")


@pytest.mark.slow  # installs @asyncapi/parser from npm on first use
def test_official_parser_accepts_the_document() -> None:
    """@asyncapi/parser (npm) parses schemas/asyncapi.yaml with no error diagnostics."""
    result = _parse(asyncapi.COMMITTED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"valid":true' in result.stdout


@pytest.mark.slow
def test_official_parser_rejects_a_broken_document(tmp_path: Path) -> None:
    """The parser check can fail: a channel pointing at a message that does not exist is reported."""
    doc = asyncapi.document()
    first = next(iter(doc["channels"].values()))
    first["messages"] = {"ghost": {"$ref": "#/components/messages/doesNotExist"}}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = _parse(broken)
    assert result.returncode == 1 and "INVALID" in result.stdout


@pytest.mark.unit
def test_operations_invite_onto_the_raw_and_published_topics_only_over_the_secure_server() -> None:
    """Integrators send to the raw topics and subscribers receive from the canonical, status, snapshot and erasure
    topics (ADR 0035);
    no operation names an internal topic (the key store, a changelog, the claims), and the documented server is the
    secure one (downstream audit: every topic was 'Subscribers read here', on a plaintext 9092 server)."""
    doc = asyncapi.document()
    channels = {f"#/channels/{cid}": ch["address"] for cid, ch in doc["channels"].items()}
    kinds = {t.name: t.kind for t in TOPICS}
    used = {channels[op["channel"]["$ref"]]: op["action"] for op in doc["operations"].values()}
    assert used == {t.name: "send" if t.kind is Kind.RAW else "receive" for t in TOPICS
                    if t.kind in (Kind.RAW, Kind.CANONICAL, Kind.STATUS, Kind.SNAPSHOT, Kind.ERASURE)} | {
        f"{t.name}{BOUND}{{sourceId}}": "send" for t in TOPICS if t.kind is Kind.RAW}  # a source's own (review)
    assert all(kinds.get(name.split(BOUND)[0]) is not Kind.INTERNAL for name in used)
    local = doc["servers"]["local"]
    assert local["protocol"] == "kafka-secure" and local["security"]
    assert doc["components"]["securitySchemes"]["scram"]["type"] == "scramSha512"
