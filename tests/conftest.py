"""Test tiers and the real Kafka broker every Kafka test runs against.

Broker choice, in order: `KAFKA_BOOTSTRAP` if set; testcontainers' Kafka when a
Docker engine answers; otherwise the local broker of `infra/kafka` (started on
first use, left running for the next run).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import keys_env

ROOT = Path(__file__).resolve().parent.parent

keys_env.apply()  # intake seals personal data: every service a test starts gets the test keys


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Apache Kafka broker."""
    if explicit := os.environ.get("KAFKA_BOOTSTRAP"):
        yield explicit
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    subprocess.run([str(ROOT / "infra/kafka/kafka.sh"), "start"], check=True)
    before = _topics("127.0.0.1:9092")
    yield "127.0.0.1:9092"
    if not os.environ.get("KEEP_TEST_TOPICS"):  # set it when another run shares the broker meanwhile
        _forget_test_topics("127.0.0.1:9092", before)


def _topics(bootstrap: str) -> set[str]:
    from services.common.admin import list_topics
    from services.common.settings import KafkaConnection

    return asyncio.run(list_topics(KafkaConnection(bootstrap=bootstrap)))


def _forget_test_topics(bootstrap: str, before: set[str]) -> None:
    """The local broker outlives the run: the per-test namespaces' topics it created go, or thousands of idle
    partitions pile up run after run until the broker runs out of file descriptors."""
    from services.common.admin import delete_topics
    from services.common.settings import KafkaConnection

    try:
        created = sorted(t for t in _topics(bootstrap) - before
                         if "." in t and not t.startswith(("commune.", "_")))  # a namespace prefix: a test's
        for start in range(0, len(created), 200):
            asyncio.run(delete_topics(KafkaConnection(bootstrap=bootstrap), created[start:start + 200]))
    except Exception as exc:  # tidying up never fails the run
        print(f"\nleft the test topics on the broker ({type(exc).__name__})")


@pytest.fixture(scope="session")
def kafka_topics(kafka_bootstrap: str) -> str:
    """The broker with every registry topic created."""
    from services.common.admin import ensure_topics
    from services.common.settings import KafkaConnection

    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap)))
    return kafka_bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique suffix for per-test topics and consumer groups."""
    return uuid.uuid4().hex[:10]


TIERS = ("unit", "kafka", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries its tier (unit, kafka or slow), so `make test-unit` runs every pure test."""
    untiered = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError("tests without a tier marker (pytestmark = pytest.mark.unit / kafka / slow): "
                                + ", ".join(untiered[:20]) + (" ..." if len(untiered) > 20 else ""))
