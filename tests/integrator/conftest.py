"""One namespace, one intake worker and one gateway for the integrator tests (started once, real broker)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.topics import TOPICS, namespaced, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.kafkatools import free_port, start_service, stop_service
from tests.waiting import eventually

REGISTRY = """
sources:
  - id: thuong-lam-one-stop
    sources: ["/communes/02269/one-stop"]
    families: [dossier]
    communes: ["02269"]
  - id: lang-son-dossiers
    sources: ["/provinces/20/dossiers"]
    families: [dossier]
    provinces: ["20"]
  - id: commune-apps
    sources: ["/communes/*"]
    families: [dossier, mobile-team, announcement]
    communes: ["*"]
"""
API_KEY = "tl-test-api-key-7f3a"  # constants: conftest may be imported under two module names
HMAC_KEY = "ls-test-hmac-key-91c2"
SECRETS = f"thuong-lam-one-stop: {{api_key: {API_KEY}}}\nlang-son-dossiers: {{hmac_key: {HMAC_KEY}}}\n"
CLI = str(Path(sys.executable).with_name("commune-bus"))


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    namespace: str
    url: str
    files: Path
    metrics_url: str
    """The gateway's `/metrics` server (`GATEWAY_HTTP_PORT`), off its API port."""

    def topic(self, name: str) -> str:
        return namespaced(name, self.namespace)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the installed `commune-bus` against this namespace."""
        env = {**os.environ, "KAFKA_BOOTSTRAP": self.bootstrap, "COMMUNE_BUS_NAMESPACE": self.namespace,
               "COLUMNS": "200"}
        result = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30, path: str = "/healthz") -> None:
    """Wait for the gateway's /healthz (or `path`: /readyz) to answer 200; fail at once if the process exits."""

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the gateway at {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + path, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    eventually(healthy, timeout=timeout, interval=0.2, what=f"{url}{path} 200")


def start_gateway(files: Path, bootstrap: str, namespace: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = start_service("services.gateway", {
        "KAFKA_BOOTSTRAP": bootstrap, "GATEWAY_NAMESPACE": namespace, "GATEWAY_PORT": str(port),
        "GATEWAY_HTTP_PORT": str(free_port()), "GATEWAY_SOURCES_FILE": str(files / "sources.yaml"),
        "GATEWAY_SECRETS_FILE": str(files / "secrets.yaml"), **env,
    }, files / f"gateway-{port}.log")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


@pytest.fixture(scope="package")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Topics of a fresh namespace, `python -m services.intake` and `python -m services.gateway` on it."""
    namespace = "int" + naming.unique()  # the run's token: its topics go at the run's end, as every test's
    files = tmp_path_factory.mktemp("integrator")
    (files / "sources.yaml").write_text(REGISTRY, encoding="utf-8")
    (files / "secrets.yaml").write_text(SECRETS, encoding="utf-8")
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [scoped(t, namespace) for t in TOPICS]))
    intake = start_service("services.intake", {
        "KAFKA_BOOTSTRAP": kafka_bootstrap, "INTAKE_NAMESPACE": namespace, "INTAKE_HTTP_PORT": str(free_port()),
        "INTAKE_SOURCES_FILE": str(files / "sources.yaml"),
    }, files / "intake.log")
    metrics_port = free_port()
    gateway, url = start_gateway(files, kafka_bootstrap, namespace, GATEWAY_HTTP_PORT=str(metrics_port))
    # ready, not only alive: its Idempotency-Keys restored (the OpenAPI check calls /readyz and takes a 503 for a bug)
    wait_healthy(url, gateway, timeout=60, path="/readyz")
    try:
        yield Stack(kafka_bootstrap, namespace, url, files, f"http://127.0.0.1:{metrics_port}")
    finally:
        stop_service(gateway)
        stop_service(intake)
