"""A secure broker of these tests' own (SASL_SSL + SCRAM-SHA-512, TLS from its own CA, ACLs), never the shared one.

`infra/kafka/kafka.sh` with `KAFKA_SECURE=1` on free ports, with its data and its
credentials (`secrets.sh`) under a temporary directory; started once for this package,
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

from schemas.events import Family
from schemas.topics import CANONICAL, RAW, TOPICS, scoped
from services.common.acls import SOURCES_FILE, bindings
from services.common.acls_apply import apply
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.sources.registry import load_registry
from services.sources.topics import bound_topic
from tests.brokers import KAFKA_SH
from tests.kafkatools import free_port
from tests.security.probes import readable
from tests.waiting import eventually_async


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


@pytest.fixture(scope="package")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A started secure broker with every registry topic and every source's bound raw topics; stopped once the
    package's last test is done, not idle through the rest of the session's tests."""
    broker = SecureBroker.at(tmp_path_factory.mktemp("secure-kafka"))
    broker.run("start")
    try:
        bound = [bound_topic(f, entry) for entry in load_registry(SOURCES_FILE).sources for f in entry.families]
        asyncio.run(ensure_topics(broker.conn("admin"), [*TOPICS, *bound]))
        yield broker
    finally:
        broker.run("stop")


@pytest.fixture
def namespace(secure_broker: SecureBroker, unique: str) -> str:
    """Every registry topic and every ACL under a namespace of this test's own."""
    admin = secure_broker.conn("admin")
    registry = load_registry(SOURCES_FILE)
    bound = [bound_topic(f, entry, unique) for entry in registry.sources for f in entry.families]
    asyncio.run(ensure_topics(admin, [*(scoped(t, unique) for t in TOPICS), *bound]))
    asyncio.run(apply(admin, bindings(registry, unique), namespace=unique))

    async def in_force() -> bool:  # the broker's authorizer learns new ACLs from the metadata log, a moment later
        assert await readable(secure_broker.conn("intake"), scoped(RAW[Family.DOSSIER], unique).name)
        assert await readable(secure_broker.conn("metrics"), scoped(CANONICAL[Family.DOSSIER], unique).name)
        return True

    asyncio.run(eventually_async(in_force, timeout=30, interval=0.2, what="the namespace's ACLs in force"))
    return unique
