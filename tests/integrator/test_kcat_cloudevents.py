"""Other languages' tools on the real broker: kcat in and out, and the official CloudEvents SDK decoding."""

from __future__ import annotations

import json
import subprocess
import uuid

import orjson
import pytest
from cloudevents.v1.kafka import KafkaMessage, from_binary

from schemas import wire
from tests.integrator.conftest import Stack
from tests.integrator.kafka_read import Rec, ce_id, wait_for
from tests.kafkatools import kcat_options
from tests.samples import portal_dossier, storm_scheduled, visit_completed
from tests.waiting import eventually

pytestmark = pytest.mark.kafka


def kcat_produce(stack: Stack, topic: str, value: bytes, key: str, *headers: str) -> None:
    args = ["kcat", "-P", "-b", stack.bootstrap, *kcat_options(), "-t", stack.topic(topic), "-k", key]
    for h in headers:
        args += ["-H", h]
    subprocess.run(args, input=value + b"\n", check=True, timeout=30, capture_output=True)


def kcat_consume(stack: Stack, topic: str) -> list[dict]:
    out = subprocess.run(["kcat", "-C", "-b", stack.bootstrap, *kcat_options(), "-t", stack.topic(topic), "-o",
                          "beginning", "-e", "-J", "-q", "-X", "isolation.level=read_committed"],
                         capture_output=True, check=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_kcat_publishes_a_raw_dossier_and_reads_the_canonical_event_back(stack: Stack) -> None:
    """A portal dossier produced with kcat (commune-code header) comes back from kcat as a canonical CloudEvent."""
    code = "KC-" + uuid.uuid4().hex[:8]
    kcat_produce(stack, "commune.raw.dossier", orjson.dumps(portal_dossier(code, status=4)), "02269",
                 "commune-code=02269")

    def canonical() -> list[dict]:
        return [m for m in kcat_consume(stack, "commune.events.dossier")
                if dict(zip(m["headers"][::2], m["headers"][1::2], strict=True)).get("ce_subject") == code]

    found = eventually(canonical, timeout=30, interval=0.5, what=f"a canonical event for {code} read by kcat")
    assert len(found) == 1, "exactly one canonical event for the dossier"
    headers = dict(zip(found[0]["headers"][::2], found[0]["headers"][1::2], strict=True))
    assert headers["ce_type"] == "vn.communebus.dossier.status-changed.v1" and headers["ce_commune"] == "02269"
    assert found[0]["key"] == "02269"
    data = json.loads(found[0]["payload"])
    assert data["dossier_code"] == code and data["status"] == 4 and data["channel"] == "online"


def test_cloudevents_sdk_decodes_every_canonical_event(stack: Stack) -> None:
    """cloudevents' Kafka binding reads every record of the three canonical topics: same attributes and data."""
    tag = uuid.uuid4().hex[:8]
    kcat_produce(stack, "commune.raw.mobile-team", orjson.dumps(visit_completed("v-" + tag)), "02269")
    kcat_produce(stack, "commune.raw.announcement", orjson.dumps(storm_scheduled("a-" + tag)), "02269")
    kcat_produce(stack, "commune.raw.dossier", orjson.dumps(portal_dossier("SDK-" + tag)), "02269",
                 "commune-code=02269")
    decoded = 0
    for family, want in (("mobile-team", "v-" + tag), ("announcement", "a-" + tag), ("dossier", None)):
        def arrived(rs: list[Rec], want: str | None = want) -> bool:
            return bool(rs) and (want is None or want in {ce_id(r) for r in rs})

        records = wait_for(stack.bootstrap, stack.topic(f"commune.events.{family}"), arrived)
        assert records, family
        for rec in records:
            ours = wire.decode(rec.headers, rec.value)
            sdk = from_binary(KafkaMessage(headers=dict(rec.headers), key=rec.key, value=rec.value))
            assert (sdk["id"], sdk["type"], sdk["source"]) == (ours.id, ours.type, ours.source)
            assert sdk["subject"] == ours.subject
            assert (sdk["commune"], sdk["province"], sdk["specversion"]) == (ours.commune, ours.province, "1.0")
            assert sdk.data == orjson.loads(rec.value) and rec.key == ours.commune.encode()
            decoded += 1
    assert decoded >= 3
