"""The local 3-broker KRaft cluster of `infra/kafka` (KAFKA_BROKERS=3), started once per session, with node faults.

The session gets a cluster of its own: a fresh data directory under pytest's temporary
directory and free ports, so it never touches the single broker on 9092 nor a cluster a
developer runs on 9192-9194 (`make up BROKERS=3`), and it starts the same on a clean CI
clone as on a laptop. At the end it is stopped and its data removed (`reset`): nothing
is left running or on disk, and no later session pays for recovering old namespaces.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas.topics import TOPICS, scoped
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests.kafkatools import ROOT
from tests.waiting import eventually

KAFKA_SH = ROOT / "infra/kafka/kafka.sh"
REPLICAS = 3


def _free_run(length: int, attempts: int = 200) -> int:
    """The first of `length` consecutive loopback ports that are free now."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + length > 65535:
            continue
        taken = []
        try:
            for port in range(base, base + length):
                s = socket.socket()
                taken.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in taken:
                s.close()
        return base
    raise RuntimeError(f"no {length} consecutive free ports")


@dataclass
class Cluster:
    """A running 3-node cluster: its bootstrap list and node faults through `kafka.sh`."""

    state: Path
    base_port: int
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "KAFKA_BROKERS": "3", "KAFKA_STATE_DIR": str(self.state),
                    "KAFKA_CLUSTER_PORT": str(self.base_port), "KAFKA_CLUSTER_CONTROLLER_PORT": str(self.base_port + 3),
                    "KAFKA_HEAP_OPTS": os.environ.get("KAFKA_HEAP_OPTS", "-Xmx512m -Xms512m")}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.base_port + i}" for i in range(REPLICAS))

    def run(self, *args: str, timeout: float = 240) -> str:
        done = subprocess.run([str(KAFKA_SH), *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"kafka.sh {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def kill_node(self, node: int) -> float:
        """SIGKILL one node (a crash); returns when it was killed (monotonic)."""
        self.run("kill-node", str(node))
        return time.monotonic()

    def start_node(self, node: int) -> None:
        """Start a node again; returns once the cluster's metadata lists all three brokers (it serves again)."""
        self.run("start-node", str(node))
        eventually(lambda: asyncio.run(self.brokers()) == REPLICAS, timeout=60, interval=0.5,
                   what=f"node {node} back in the cluster's metadata")

    async def brokers(self) -> int:
        """How many brokers the cluster's metadata lists now."""
        client = clients.admin(KafkaConnection(bootstrap=self.bootstrap))
        await client.start()
        try:
            return len((await client.describe_cluster())["brokers"])
        finally:
            await client.close()

    def log(self, node: int) -> Path:
        return self.state / "cluster" / f"node{node}" / "logs" / "server.log"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh 3-node cluster for the session (RF 3, min.insync.replicas=2); stopped and removed at the end."""
    running = Cluster(tmp_path_factory.mktemp("kafka-cluster"), _free_run(2 * REPLICAS))
    try:
        running.run("start")
        yield running
    finally:
        running.run("reset")


@pytest.fixture(scope="session")
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
