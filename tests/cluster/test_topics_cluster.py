"""Topics a service creates on the 3-broker cluster are replicated: the services need no replication setting; and the
admin client that creates them works while a node is down."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import INTAKE_DEDUP, scoped
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests.faults import Cluster
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
KILLED = 3
ATTEMPTS = 30
"""Requests for any broker while one of three is dead: each of aiokafka's random picks missed it 2 times in 3,
so all of them did with a chance of (2/3)^30, under 1 in 190,000."""


async def test_a_topic_created_as_services_do_gets_three_replicas_and_two_in_sync(cluster_bootstrap: str,
                                                                                  unique: str) -> None:
    """ensure_topics without a replication factor (how every service calls it) uses the cluster's default, 3,
    and the topic requires 2 in-sync replicas for acks=all."""
    spec = scoped(INTAKE_DEDUP, f"r{unique}")
    assert await ensure_topics(KafkaConnection(bootstrap=cluster_bootstrap), [spec]) == [spec.name]
    admin = clients.admin(KafkaConnection(bootstrap=cluster_bootstrap))
    await admin.start()

    async def min_insync() -> list[str]:
        """The topic's min.insync.replicas, once the broker asked knows the new topic (error 0, an entry)."""
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name,
                                                               {"min.insync.replicas": ""})])
        [(error_code, _, _, _, entries)] = configs[0].resources
        values = [e[1] for e in entries if e[0] == "min.insync.replicas"]
        assert error_code == 0 and values, (error_code, entries)
        return values

    async def replicas() -> set[int]:
        """Replicas per partition, once the broker asked has the new topic's metadata."""
        [described] = await admin.describe_topics([spec.name])
        assert described["partitions"], described
        return {len(p["replicas"]) for p in described["partitions"]}

    try:
        counts = await eventually_async(replicas, timeout=30, interval=0.5, what="the new topic's metadata")
        values = await eventually_async(min_insync, timeout=30, interval=0.5, what="the new topic's config")
    finally:
        await admin.close()
    assert counts == {3}
    assert values == ["2"]


async def test_admin_requests_go_to_a_live_broker_while_a_crashed_one_is_still_listed(cluster: Cluster) -> None:
    """While a crashed node is still in an admin client's metadata (a broker session after the crash, for a client
    started meanwhile), requests meant for any broker (how `ensure_topics` lists and describes topics at every
    service's start) go to live ones: aiokafka's admin client picked one at random, a third of them failed with
    NodeNotReadyError and a worker starting then restarted."""
    admin = clients.admin(KafkaConnection(bootstrap=cluster.bootstrap))
    await admin.start()
    try:
        await asyncio.to_thread(cluster.kill_node, KILLED)
        for _ in range(ATTEMPTS):
            await admin.list_topics()
        # the client's metadata (from before the kill) lists the dead node: each request could have gone there
        assert KILLED in {b.nodeId for b in admin._client.cluster.brokers()}
    finally:
        await admin.close()
        await asyncio.to_thread(cluster.start_node, KILLED)
