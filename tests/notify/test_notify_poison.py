"""Poison records on the canonical topics: notify skips each, counted by reason, and notifies for the next event."""

from __future__ import annotations

import aiohttp
import pytest

from services.notify.fake_providers import FakeProviders
from services.notify.topics import Names
from tests.kafkatools import free_port, produce
from tests.notify.conftest import StartNotify, caught_up, publish
from tests.notify.events import dossier
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka

DOSSIER_TYPE = b"vn.communebus.dossier.status-changed.v1"
POISON: list[tuple[bytes | None, list[tuple[str, bytes]]]] = [
    (None, [("ce_specversion", b"1.0"), ("ce_type", DOSSIER_TYPE)]),  # a null value (a tombstone)
    (b"{}", [("ce_specversion", b"1.0"), ("ce_type", b"\xff\xfe")]),  # a ce_ header that is not UTF-8
    (b'{"x":' * 300 + b"1" + b"}" * 300, [("ce_specversion", b"1.0"), ("ce_type", DOSSIER_TYPE)]),  # 300 deep
]


async def test_poison_records_are_skipped_and_the_events_after_them_notified(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, start_notify: StartNotify,
        fake: FakeProviders) -> None:
    """Each poison record is skipped with its reason (counted, never echoed); each valid event after one is sent."""
    port = free_port()
    proc = start_notify(NOTIFY_HTTP_PORT=str(port))
    for i, (value, headers) in enumerate(POISON):
        await produce(kafka_bootstrap, notify_topics.dossier, [(b"02269", value, headers)])
        await publish(kafka_bootstrap, namespace, dossier(f"after-{i}", code=f"D-AFTER-{i}"))

    def sent_codes() -> set[str]:
        texts = [r.body.get("text", "") for r in fake.accepted.values() if r.path == "/sms"]
        codes = {f"D-AFTER-{i}" for i in range(len(POISON)) if any(f"D-AFTER-{i} " in t for t in texts)}
        assert len(codes) == len(POISON), codes
        return codes

    await eventually_async(sent_codes, timeout=60, interval=0.2, what="an SMS for each event after a poison record")
    await caught_up(kafka_bootstrap, namespace)  # the poison records' offsets are committed too: nothing is stuck
    assert proc.poll() is None, "notify keeps running"
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        metrics = await resp.text()
    skipped = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
               for line in metrics.splitlines() if line.startswith("notify_records_skipped_total{")}
    # a record read again after the start-up rebalance is skipped (and counted) again: at least once, never lost
    assert set(skipped) <= {'reason="not_json"', 'reason="not_utf8"', 'reason="too_deep"'}, skipped
    assert skipped['reason="not_utf8"'] >= 1 and sum(skipped.values()) >= len(POISON), skipped
