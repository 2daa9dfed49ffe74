"""Fault injection shared by fault tests and the chaos command: service processes that can be killed, paused and
resumed, and a private 3-broker cluster with node faults.

Never the shared broker on 127.0.0.1:9092: a single broker a caller may stop is `tests.brokers.OwnBroker`; the
cluster here gets a fresh data directory and free ports, so it touches neither that broker nor a cluster a developer
runs on 9192-9194 (`make up BROKERS=3`). The one cluster helper: the cluster tests (`tests/cluster/conftest.py`) and
the chaos command (`tests/chaos`) both use `Cluster`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from aiokafka.client import CoordinationType
from aiokafka.errors import CoordinatorNotAvailableError, KafkaConnectionError

from services.common import clients
from services.common.settings import KafkaConnection
from tests.brokers import KAFKA_SH
from tests.cluster.tools import metric_sum, scrape
from tests.kafkatools import free_port, free_port_run, start_service, stop_service
from tests.waiting import eventually, eventually_async

REPLICAS = 3
LAST_COMMIT = "commune_last_commit_timestamp_seconds"


def _event(line: str) -> str | None:
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed.get("event") if isinstance(parsed, dict) else None


@dataclass
class Cluster:
    """A 3-node KRaft cluster of `infra/kafka/kafka.sh` (KAFKA_BROKERS=3) on its own ports and data directory, with
    node faults through `kafka.sh`."""

    state: Path
    base_port: int
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "KAFKA_BROKERS": "3", "KAFKA_STATE_DIR": str(self.state),
                    "KAFKA_CLUSTER_PORT": str(self.base_port), "KAFKA_CLUSTER_CONTROLLER_PORT": str(self.base_port + 3),
                    "KAFKA_HEAP_OPTS": os.environ.get("KAFKA_HEAP_OPTS", "-Xmx512m -Xms512m")}

    @classmethod
    def fresh(cls, state: Path) -> Cluster:
        """A cluster (not yet started) on free ports, with its data under `state`."""
        return cls(state, free_port_run(2 * REPLICAS))

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

    async def coordinators(self, keys: Sequence[tuple[CoordinationType, str]]) -> list[int]:
        """The nodes that coordinate each transactional id or consumer group of `keys` now (FindCoordinator requests,
        retried while the coordinators' internal topic is being created on first use)."""
        client = clients.admin(KafkaConnection(bootstrap=self.bootstrap))
        await client.start()

        async def lookup(kind: CoordinationType, key: str) -> int:
            try:
                return int(await client._client.coordinator_lookup(kind, key))
            except CoordinatorNotAvailableError as exc:  # its internal topic is being created: not yet
                raise AssertionError(f"no coordinator yet ({type(exc).__name__})") from None

        try:
            return [await eventually_async(partial(lookup, kind, key), timeout=60, interval=0.2,
                                           what=f"the {kind.name.lower()} coordinator of {key}") for kind, key in keys]
        finally:
            await client.close()

    def controller(self) -> int:
        """The KRaft active controller now (DescribeQuorum, through Kafka's kafka-metadata-quorum.sh)."""
        status = self.run("quorum", "describe", "--status", timeout=60)
        found = re.search(r"^LeaderId:\s+(\d+)", status, re.MULTILINE)
        assert found, f"no LeaderId in the quorum's status: {status}"
        return int(found.group(1))

    def log(self, node: int) -> Path:
        return self.state / "cluster" / f"node{node}" / "logs" / "server.log"


@dataclass
class Worker:
    """One `python -m <module>` process with its HTTP server (/metrics) on `port`, which a fault may SIGKILL, SIGSTOP
    and SIGCONT. A paused worker is not scraped: its server would not answer."""

    module: str
    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]
    paused: bool = False
    ended: bool = False
    """Killed or stopped on purpose (by a fault, or at the end)."""
    cut_off: bool = False
    """Cut off from the broker by a network partition: it runs, but its group hears nothing from it, so it does not
    count among the workers that can work (nor is it scraped) until the partition heals."""
    log_from: int = 0
    """Where this process's lines begin in `log`: a file kept from an earlier run (`make chaos --workdir` again) is
    appended to."""

    @classmethod
    def start(cls, module: str, name: str, env: dict[str, str], port_variable: str, log_dir: Path) -> Worker:
        """`python -m <module>` with `env` and a free port in `port_variable`; output to `<log_dir>/<name>.log`."""
        port = free_port()
        log = log_dir / f"{name}.log"
        log_from = log.stat().st_size if log.exists() else 0
        return cls(module, name, port, log, start_service(module, {**env, port_variable: str(port)}, log),
                   log_from=log_from)

    @property
    def running(self) -> bool:
        """Alive, neither paused nor cut off: a worker that can do work now."""
        return self.proc.poll() is None and not self.paused and not self.cut_off

    def exited_unbidden(self) -> int | None:
        """The exit code if the worker exited and nothing ended it on purpose (else None)."""
        code = self.proc.poll()
        return None if self.ended else code

    def kill(self) -> None:
        """SIGKILL (a crash: no commit, no leave-group), then reap it."""
        self.ended = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.paused = False

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> int:
        """SIGTERM (resumed first if paused), SIGKILL after 20 s; its exit code."""
        self.ended = True
        if self.paused and self.proc.poll() is None:
            self.resume()
        return stop_service(self.proc, timeout=20)

    def logged(self, event: str) -> int:
        """How many of this process's log lines are `event` (its JSON lines' "event"): readable whether it runs, is
        paused or was killed, unlike its /metrics."""
        try:
            with self.log.open("rb") as f:
                f.seek(self.log_from)
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if f'"{event}"' in line and _event(line) == event)

    async def metric(self, name: str) -> float:
        """The sum of every sample of `name` on the worker's /metrics (0 while it does not answer or lacks it)."""
        if not self.running:
            return 0.0
        return metric_sum(await asyncio.to_thread(scrape, self.port), name)

    async def last_commit(self) -> float:
        """When the worker last committed its progress (epoch seconds; 0 before its first commit)."""
        return await self.metric(LAST_COMMIT)


class StartingClient:
    """A Kafka client whose start got as far as the broker's connection, then fails, or waits there (to be cancelled):
    what a run must stop all the same (the leak audit of 2026-12-05). `starting` is set once its start began."""

    def __init__(self, fails: bool = True, starting: asyncio.Event | None = None) -> None:
        self.fails, self.starting, self.stopped = fails, starting or asyncio.Event(), False

    async def start(self) -> None:
        self.starting.set()
        if self.fails:
            raise KafkaConnectionError("broker gone after the bootstrap")
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stopped = True
