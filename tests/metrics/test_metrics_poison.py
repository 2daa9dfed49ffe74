"""Poison records on a canonical topic: the metrics worker skips each one, counted, and its figures stay exact."""

from __future__ import annotations

import pytest

from schemas.topics import EVENTS_DOSSIER, scoped
from tests.kafkatools import produce
from tests.metrics.golden import event_set, expected
from tests.metrics.test_metrics_kafka import WAIT_S, env, figures_of, publish, sample  # noqa: F401 (env: fixture)
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

DOSSIER_TYPE = b"vn.communebus.dossier.status-changed.v1"
POISON: list[tuple[bytes | None, list[tuple[str, bytes]]]] = [
    (None, [("ce_specversion", b"1.0"), ("ce_type", DOSSIER_TYPE)]),  # a null value (a tombstone)
    (b"{}", [("ce_specversion", b"1.0"), ("ce_type", b"\xff\xfe")]),  # a ce_ header that is not UTF-8
    (b'{"x":' * 300 + b"1" + b"}" * 300, [("ce_specversion", b"1.0"), ("ce_type", DOSSIER_TYPE)]),  # 300 deep
    (b"{}", [("ce_specversion", b"1.0"), ("ce_type", b"vn.communebus.unheard-of.v1")]),  # an unknown type
    # a header without a value (Kafka allows it; aiokafka reads None): `.decode()` raised AttributeError out of the
    # decode and ended the worker's run, again after every restart (found by the fast path's review)
    (b'{"dossier_code":"X-1","channel":"counter","status":1}',
     [("ce_specversion", b"1.0"), ("ce_type", DOSSIER_TYPE), ("ce_id", None)]),  # type: ignore[list-item]
]


async def test_poison_between_valid_events_is_skipped_and_the_figures_stay_exact(kafka_bootstrap: str, env) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Null values, non-UTF-8 headers, 300-deep JSON, unknown types and null headers are counted invalid; the rest is
    exact."""
    events = event_set(seed=5)
    truth = expected(events)
    half = len(events) // 2
    topic = scoped(EVENTS_DOSSIER, env.namespace).name
    invalid_before = sample("commune_metrics_events_total", family="dossier", outcome="invalid")
    await produce(kafka_bootstrap, topic, [(b"02269", v, h) for v, h in POISON])
    await publish(kafka_bootstrap, env.namespace, events[:half])
    await produce(kafka_bootstrap, topic, [(b"02269", v, h) for v, h in POISON])
    await publish(kafka_bootstrap, env.namespace, events[half:])
    w = env("w1")
    await eventually_async(lambda: figures_of(w, like=truth) == truth, timeout=WAIT_S, what="exact figures")
    assert not w.task.done(), "the worker keeps running"
    invalid = sample("commune_metrics_events_total", family="dossier", outcome="invalid") - invalid_before
    assert invalid == 2 * len(POISON)
