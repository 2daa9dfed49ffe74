"""`commune-bus trace` on the real broker: a rejected record traced to its dead letter and reason, an accepted one to
its canonical event and trace id; only metadata is shown (never a value)."""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas import trace as trace_context
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, RAW
from services.cli.trace import since_ms, table, trace_record
from services.common.settings import KafkaConnection
from tests.intake.conftest import StartIntake
from tests.kafkatools import produce, read_all
from tests.samples import canonical_dossier, dumps

pytestmark = pytest.mark.kafka


def test_a_rejected_and_an_accepted_record_are_traced(
    kafka_bootstrap: str, namespace: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    start_intake()
    accepted = canonical_dossier("trace-ok", dossier_code="TL-TRACE-0001")
    rejected = {**canonical_dossier("trace-bad", dossier_code="TL-TRACE-0002"), "time": "0001-01-01T00:00:00"}

    async def scenario() -> tuple[list, list]:
        await produce(kafka_bootstrap, intake_topics[RAW[Family.DOSSIER].name],
                      [(b"02269", dumps(accepted), []), (b"02269", dumps(rejected), [])])
        await read_all(kafka_bootstrap, intake_topics[CANONICAL[Family.DOSSIER].name], expect=1, timeout=60)
        await read_all(kafka_bootstrap, intake_topics[DLQ_INTAKE.name], expect=1, timeout=60)
        conn = KafkaConnection(bootstrap=kafka_bootstrap)
        return (await trace_record(conn, namespace, "TL-TRACE-0002"),
                await trace_record(conn, namespace, "TL-TRACE-0001"))

    bad, good = asyncio.run(scenario())
    assert [s.stage for s in bad] == ["raw", "dead letter"]
    assert bad[1].what.startswith("value_out_of_range (time)") and bad[0].where in bad[1].what
    assert [s.stage for s in good] == ["raw", "canonical"]
    assert "vn.communebus.dossier.status-changed.v1 id trace-ok subject TL-TRACE-0001" in good[1].what
    trace_id = good[1].trace
    assert trace_id == trace_context.trace_id(trace_context.derive(accepted["source"], "trace-ok"))
    by_trace = asyncio.run(trace_record(KafkaConnection(bootstrap=kafka_bootstrap), namespace, trace_id))
    assert [s.stage for s in by_trace] == ["canonical"]
    # --since: read from the first record stamped at or after it (Kafka's time index), or nothing if none is
    conn, now_ms = KafkaConnection(bootstrap=kafka_bootstrap), int(time.time() * 1000)
    assert asyncio.run(trace_record(conn, namespace, "TL-TRACE-0001", since_ms("1h"))) == good
    assert asyncio.run(trace_record(conn, namespace, "TL-TRACE-0001", now_ms + 3_600_000)) == []
    assert asyncio.run(trace_record(conn, namespace, "TL-TRACE-0002", bad[0].at_ms)) == bad  # from its own time on
    rendered = str([table(bad).columns[3]._cells, table(good).columns[3]._cells])
    assert "Trần" not in rendered and "0987654321" not in rendered  # the applicant's name and phone never shown
