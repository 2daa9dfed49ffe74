"""The local 3-broker KRaft cluster of `infra/kafka` (KAFKA_BROKERS=3), started once for this package's tests, with
node faults.

The package's tests get a cluster of their own (`tests.faults.Cluster`, which the chaos command uses
too): a fresh data directory under pytest's temporary directory and free ports, so it never
touches the single broker on 9092 nor a cluster a developer runs on 9192-9194
(`make up BROKERS=3`), and it starts the same on a clean CI clone as on a laptop. At the end
it is stopped and its data removed (`reset`): nothing is left running or on disk, and no
later session pays for recovering old namespaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from schemas.topics import TOPICS, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests.faults import REPLICAS, Cluster


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Cluster]:
    """A fresh 3-node cluster for this package's tests (RF 3, min.insync.replicas=2); stopped and removed once the
    last of them is done, not at the end of the session: three idle brokers took a third of a core for the rest of
    the fault run (~190 s of CPU in its first ten minutes, on CI's 2 cores).
    After `kafka_bootstrap`: on the secure broker it puts admin's credentials in the environment the cluster
    and its clients take."""
    running = Cluster.fresh(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        running.run("start")
        yield running
    finally:
        running.run("reset")


@pytest.fixture(scope="package")
def cluster_bootstrap(cluster: Cluster) -> str:
    """The cluster's bootstrap list, host:port,host:port,host:port."""
    return cluster.bootstrap


@pytest.fixture
def cluster_namespace(cluster_bootstrap: str, unique: str) -> str:
    """A namespace with every registry topic created on the cluster with replication factor 3."""
    namespace = f"c{unique}"
    specs = [scoped(t, namespace) for t in TOPICS]
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=cluster_bootstrap), specs, replication_factor=REPLICAS))
    return namespace
