"""Topics a service creates on the 3-broker cluster are replicated: the services need no replication setting."""

from __future__ import annotations

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import INTAKE_DEDUP, scoped
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_a_topic_created_as_services_do_gets_three_replicas_and_two_in_sync(cluster_bootstrap: str,
                                                                                  unique: str) -> None:
    """ensure_topics without a replication factor (how every service calls it) uses the cluster's default, 3,
    and the topic requires 2 in-sync replicas for acks=all."""
    spec = scoped(INTAKE_DEDUP, f"r{unique}")
    assert await ensure_topics(KafkaConnection(bootstrap=cluster_bootstrap), [spec]) == [spec.name]
    admin = clients.admin(KafkaConnection(bootstrap=cluster_bootstrap))
    await admin.start()
    try:
        [described] = await admin.describe_topics([spec.name])
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name,
                                                               {"min.insync.replicas": ""})])
    finally:
        await admin.close()
    assert {len(p["replicas"]) for p in described["partitions"]} == {3}
    [(_, _, _, _, entries)] = configs[0].resources
    assert [e[1] for e in entries if e[0] == "min.insync.replicas"] == ["2"]
