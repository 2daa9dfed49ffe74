"""Fixtures for intake on the real broker: a namespace of its own and a worker process."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas.topics import CANONICAL, DLQ_INTAKE, INTAKE_DEDUP, RAW, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests.kafkatools import free_port, start_service, stop_service

StartIntake = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def namespace(unique: str) -> str:
    return f"t{unique}"


@pytest.fixture
def intake_topics(kafka_bootstrap: str, namespace: str) -> dict[str, str]:
    """The namespace's raw, canonical and dead-letter topics, created; name by role."""
    specs = [*RAW.values(), *CANONICAL.values(), DLQ_INTAKE, INTAKE_DEDUP]
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [scoped(s, namespace) for s in specs]))
    return {s.name: scoped(s, namespace).name for s in specs}


@pytest.fixture
def start_intake(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> Iterator[StartIntake]:
    """Starts `python -m services.intake` workers on the namespace; stops them after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(bootstrap: str | None = None, worker_id: str = "0", **env: str) -> subprocess.Popen[bytes]:
        port = free_port()
        proc = start_service("services.intake", {
            "KAFKA_BOOTSTRAP": bootstrap or kafka_bootstrap, "INTAKE_NAMESPACE": namespace,
            "INTAKE_WORKER_ID": worker_id, "INTAKE_HTTP_PORT": str(port), **env,
        }, tmp_path / "intake.log")
        proc.http_port = port  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_service(proc)
