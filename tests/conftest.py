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
    yield "127.0.0.1:9092"


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
