"""An audit topic made before ADR 0043, at CreateTime, on the real broker: an erasure still works, its mark dated by
the eraser's clock as before, and it says so; `topics create`'s reconciliation gives the topic LogAppendTime, and the
next erasure's mark is dated by the broker's stamp on its audit record, whatever the eraser's clock says."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from schemas.personal import ERASED_MARK, ErasureMark, record_key
from schemas.topics import KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_AUDIT, PRIVACY_ERASURES, scoped
from services.common.admin import described_configs, ensure_topics, reconcile_configs
from services.common.settings import KafkaConnection
from services.common.topic_configs import Drift
from services.privacy.erase import CLOCK_MARGIN, erase_subject
from tests.kafkatools import read_all
from tests.waiting import eventually

pytestmark = pytest.mark.kafka


def test_an_audit_topic_made_before_is_reconciled_and_then_dates_the_mark(kafka_bootstrap: str, unique: str) -> None:
    """Both erasures by a host 5 minutes slow: the first, on the old topic, gets a mark of that host's time and a
    warning; `reconcile_configs` mends the topic's `message.timestamp.type`; the second's mark is the broker's time of
    its audit record and a minute. On the old registry nothing was mended and both marks were 5 minutes early."""
    conn, ns = KafkaConnection(bootstrap=kafka_bootstrap), f"au{unique}"
    audit = scoped(PRIVACY_AUDIT, ns)
    made_before = replace(audit, config={"retention.ms": "-1"})  # as the registry made it before ADR 0043
    asyncio.run(ensure_topics(conn, [*(scoped(t, ns) for t in (KEYS_APPLICANTS, KEYS_DEAD_LETTERS, PRIVACY_ERASURES)),
                                     made_before]))

    def erase(subject: str) -> tuple[datetime, ErasureMark, int]:
        slow = datetime.now(UTC) - timedelta(minutes=5)
        asyncio.run(erase_subject(conn, ns, subject, requested_by="operator:tester", now=slow))
        [mark] = [ErasureMark.model_validate_json(r.value or b"") for r in asyncio.run(read_all(
            kafka_bootstrap, scoped(KEYS_APPLICANTS, ns).name, idle=0.5)) if r.key == record_key(subject, ERASED_MARK)]
        [logged] = [r for r in asyncio.run(read_all(kafka_bootstrap, audit.name, idle=0.5))
                    if r.key == subject.encode()]
        return slow, mark, logged.timestamp

    with capture_logs() as logs:
        slow, first, _ = erase("a-before")
    assert first.created_up_to == slow + CLOCK_MARGIN
    assert [e["event"] for e in logs if e["event"].startswith("erase.")] == ["erase.mark_by_local_clock"]

    drifts = asyncio.run(reconcile_configs(conn, [audit]))
    assert drifts == [Drift(audit.name, "message.timestamp.type", "CreateTime", "LogAppendTime")]
    eventually(lambda: asyncio.run(described_configs(conn, [audit.name]))[audit.name].values.get(
        "message.timestamp.type") == "LogAppendTime", what="the broker applies the altered config")  # not at once

    with capture_logs() as logs:
        slow, second, stamped = erase("a-after")
    assert second.created_up_to == datetime.fromtimestamp(stamped / 1000, UTC) + CLOCK_MARGIN
    assert second.created_up_to > slow + CLOCK_MARGIN + timedelta(minutes=4)
    assert [e["event"] for e in logs if e["event"].startswith("erase.")] == []
