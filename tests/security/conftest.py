"""A secure broker of these tests' own (SASL_SSL + SCRAM-SHA-512, TLS from its own CA, ACLs), never the shared one.

`infra/kafka/kafka.sh` with `KAFKA_SECURE=1` on free ports, with its data and its
credentials (`secrets.sh`) under a temporary directory; started once per session,
the registry topics created as `admin`, the ACLs of `services.common.acls` applied by
kafka.sh itself at start. Each principal's connection comes from its env file.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.topics import TOPICS
from services.common.acls import SOURCES_FILE
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.sources.registry import load_registry
from services.sources.topics import bound_topic
from tests.brokers import KAFKA_SH
from tests.kafkatools import free_port


@dataclass
class SecureBroker:
    state: Path
    secrets: Path
    env: dict[str, str]

    @classmethod
    def at(cls, root: Path) -> SecureBroker:
        env = {**os.environ, "KAFKA_SECURE": "1", "KAFKA_STATE_DIR": str(root / "state"),
               "KAFKA_SECRETS_DIR": str(root / "secrets"), "KAFKA_PORT": str(free_port()),
               "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_HEAP_OPTS": "-Xmx512m -Xms512m",
               "KAFKA_APPLY_ACLS": "1"}
        env.pop("KAFKA_BROKERS", None)
        return cls(root / "state", root / "secrets", env)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.env['KAFKA_PORT']}"

    def run(self, action: str, timeout: float = 180) -> str:
        done = subprocess.run([str(KAFKA_SH), action], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"kafka.sh {action}: {done.stdout}{done.stderr}"
        return done.stdout

    def conn(self, principal: str) -> KafkaConnection:
        """The connection settings `secrets.sh` wrote for `principal`."""
        return KafkaConnection.from_env_file(self.secrets / f"{principal}.env")


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A started secure broker with every registry topic and every source's bound raw topics; stopped after the
    session."""
    broker = SecureBroker.at(tmp_path_factory.mktemp("secure-kafka"))
    broker.run("start")
    try:
        bound = [bound_topic(f, entry) for entry in load_registry(SOURCES_FILE).sources for f in entry.families]
        asyncio.run(ensure_topics(broker.conn("admin"), [*TOPICS, *bound]))
        yield broker
    finally:
        broker.run("stop")
