"""intake enforces the source registry for records arriving on Kafka."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from schemas.deadletter import DeadLetterContext, Reason
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, RAW
from tests.intake.conftest import StartIntake
from tests.kafkatools import produce, read_all
from tests.samples import canonical_dossier, dumps, visit_completed

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
