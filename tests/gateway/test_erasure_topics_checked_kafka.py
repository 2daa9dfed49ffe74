"""The gateway, which erases, checks the erasure topics' configs when its claims reader starts, creating none: an
audit topic left at CreateTime after the upgrade to ADR 0043 (erasures dated by the eraser's clock until `topics
create` is run) shows in `commune_topic_config_drift`, as the runbook says. Before, no service checked that topic and
the gauge said nothing (upgrade audit)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY

from schemas.topics import GATEWAY_CLAIMS, KEYS_APPLICANTS, PRIVACY_AUDIT, PRIVACY_ERASURES, scoped
from services.common.admin import ensure_topics, list_topics
from services.common.health import Health
from services.common.settings import KafkaConnection
from services.gateway.claimlog import KafkaClaims
from services.privacy.erase import erasure_topics
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka


async def test_an_audit_topic_left_at_create_time_shows_as_drift(kafka_bootstrap: str, unique: str) -> None:
    namespace = f"gwaudit{unique}"
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    audit = scoped(PRIVACY_AUDIT, namespace)
    await ensure_topics(conn, [replace(audit, config={"retention.ms": "-1"})])  # as the release before made it
    claims = KafkaClaims(conn, scoped(GATEWAY_CLAIMS, namespace), client_id="tests-gateway-audit", timeout_s=10.0,
                         checked=erasure_topics(namespace))
    reader = asyncio.create_task(claims.run(Health("gateway")))
    try:
        await eventually_async(lambda: claims.waiting() is None, timeout=60, interval=0.1, what="claims restored")
        drift = REGISTRY.get_sample_value("commune_topic_config_drift", {"topic": audit.name})
        assert drift == 1  # message.timestamp.type: CreateTime, the registry's LogAppendTime
        assert scoped(PRIVACY_ERASURES, namespace).name not in await list_topics(conn)  # checked, never created
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_a_key_topic_no_service_may_run_on_is_counted_and_the_gateway_still_serves(kafka_bootstrap: str,
                                                                                       unique: str) -> None:
    """A key topic not compacted is a drift intake and notify refuse to start on; the gateway, whose ingest needs no
    key topic, counts it and its claims reader becomes ready (review: the reader ended with `TopicConfigError`, run
    after run, and the gateway answered nothing)."""
    namespace = f"gwkeys{unique}"
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    keys = scoped(KEYS_APPLICANTS, namespace)
    await ensure_topics(conn, [replace(keys, config={"cleanup.policy": "delete"})])
    claims = KafkaClaims(conn, scoped(GATEWAY_CLAIMS, namespace), client_id="tests-gateway-keys", timeout_s=10.0,
                         checked=erasure_topics(namespace))
    reader = asyncio.create_task(claims.run(Health("gateway")))
    try:
        await eventually_async(lambda: claims.waiting() is None or reader.done(), timeout=60, interval=0.1,
                               what="claims restored, or the reader ended")
        assert not reader.done(), reader.exception()
        assert (REGISTRY.get_sample_value("commune_topic_config_drift", {"topic": keys.name}) or 0) >= 1
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
