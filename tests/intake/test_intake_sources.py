"""intake enforces the source registry for records arriving on Kafka."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, RAW
from services.common import clients
from services.common.settings import KafkaConnection
from services.sources import load_registry
from services.sources.topics import bound_topic
from tests.intake.conftest import StartIntake
from tests.kafkatools import produce, read_all
from tests.samples import canonical_dossier, dumps, visit_completed
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka

REGISTRY = """
sources:
  - id: thuong-lam-one-stop
    sources: ["/communes/02269/one-stop"]
    families: [dossier]
    communes: ["02269"]
"""


def test_unregistered_or_overreaching_sources_are_dead_lettered(
    kafka_bootstrap: str, intake_topics: dict[str, str], start_intake: StartIntake, tmp_path: Path
) -> None:
    """A registered source is accepted; an unknown source, or a known one outside its families, is unauthorised."""
    registry = tmp_path / "sources.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    start_intake(INTAKE_SOURCES_FILE=str(registry))
    ok = canonical_dossier("src-ok")
    rogue = {**canonical_dossier("src-rogue"), "source": "/somewhere/else"}
    wrong_family = visit_completed("src-visit")
    wrong_family["source"] = "/communes/02269/one-stop"

    async def scenario() -> tuple[list, list]:
        await produce(kafka_bootstrap, intake_topics[RAW[Family.DOSSIER].name],
                      [(b"02269", dumps(ok), []), (b"02269", dumps(rogue), [])])
        await produce(kafka_bootstrap, intake_topics[RAW[Family.MOBILE_TEAM].name],
                      [(b"02269", dumps(wrong_family), [])])
        canonical = await read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name], expect=1, timeout=60)
        dlq = await read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=2, timeout=60)
        return canonical, dlq

    canonical, dlq = asyncio.run(scenario())
    assert [dict(r.headers)["ce_id"] for r in canonical] == [b"src-ok"]
    contexts = [DeadLetterContext.from_headers(r.headers) for r in dlq]
    assert [c.reason for c in contexts] == [Reason.UNAUTHORISED_SOURCE] * 2
    assert sorted(c.field for c in contexts) == ["source", "type"]  # unknown source; known source, wrong family


BOUND_REGISTRY = REGISTRY + """
  - id: lang-son-dossiers
    sources: ["/provinces/20/dossiers", "/provinces/20/dossiers/*"]
    families: [dossier]
    provinces: ["20"]
"""


def test_a_bound_topic_accepts_only_its_own_source_and_communes(
    kafka_bootstrap: str, namespace: str, intake_topics: dict[str, str], start_intake: StartIntake, tmp_path: Path
) -> None:
    """On `commune.raw.dossier.src.<entry>` (only that entry's principal may write it) the source is the topic's:
    a record claiming another registered source, or a commune outside the entry, is dead-lettered even though the
    claimed source could publish it on the shared topic."""
    registry = tmp_path / "sources.yaml"
    registry.write_text(BOUND_REGISTRY, encoding="utf-8")
    entries = load_registry(registry).by_id
    thuong_lam = bound_topic(Family.DOSSIER, entries["thuong-lam-one-stop"], namespace).name
    lang_son = bound_topic(Family.DOSSIER, entries["lang-son-dossiers"], namespace).name
    start_intake(INTAKE_SOURCES_FILE=str(registry))  # creates the bound topics, reads them beside the shared ones
    own = canonical_dossier("bound-own")  # /communes/02269/one-stop, commune 02269
    # what the registry lets /provinces/20/dossiers publish on the shared topic, sent on Thượng Lâm's own topic
    spoofed = {**canonical_dossier("bound-spoofed"), "source": "/provinces/20/dossiers", "commune": "06040",
               "province": "20"}
    elsewhere = {**canonical_dossier("bound-elsewhere"), "commune": "02266"}  # Tuyên Quang, not Thượng Lâm
    lang_son_own = {**canonical_dossier("bound-lang-son"), "source": "/provinces/20/dossiers/x", "commune": "06040",
                    "province": "20"}
    lang_son_outside = {**canonical_dossier("bound-outside"), "source": "/provinces/20/dossiers/x"}  # 02269

    async def scenario() -> tuple[list, list]:
        async def topic_ready(topic: str) -> None:
            async def exists() -> bool:
                admin = clients.admin(KafkaConnection(bootstrap=kafka_bootstrap))
                await admin.start()
                try:
                    return topic in set(await admin.list_topics())
                finally:
                    await admin.close()
            await eventually_async(exists, timeout=60, what=f"intake created {topic}")

        await topic_ready(thuong_lam)
        await topic_ready(lang_son)
        await produce(kafka_bootstrap, thuong_lam, [(r["commune"].encode(), dumps(r), [])
                                                    for r in (own, spoofed, elsewhere)])
        await produce(kafka_bootstrap, lang_son, [(b"06040", dumps(lang_son_own), []),
                                                 (b"02269", dumps(lang_son_outside), [])])
        canonical = await read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name], expect=2, timeout=90)
        dlq = await read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=3, timeout=90)
        return canonical, dlq

    canonical, dlq = asyncio.run(scenario())
    assert sorted(dict(r.headers)["ce_id"] for r in canonical) == [b"bound-lang-son", b"bound-own"]
    contexts = [DeadLetterContext.from_headers(r.headers) for r in dlq]
    assert [c.reason for c in contexts] == [Reason.UNAUTHORISED_SOURCE] * 3
    assert sorted(c.field for c in contexts) == ["commune", "commune", "source"]
    assert {c.source_topic for c in contexts} == {thuong_lam, lang_son}
