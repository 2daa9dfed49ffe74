"""Gateway processes of the tests' own: a namespace with its topics, a registry and secrets, and helpers to start,
restart and read one (`python -m services.gateway`, real broker); and `served`, the gateway's server in process."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas.topics import GATEWAY_CLAIMS, RAW, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.gateway.__main__ import _Server, server_config
from services.gateway.app import create_app
from services.gateway.memory_claims import MemoryClaims
from services.gateway.settings import GatewaySettings
from tests import naming
from tests.gateway.asgi import CREDENTIALS, Clock, Recording
from tests.gateway.asgi import REGISTRY as UNIT_REGISTRY
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
"""
API_KEY = "gw-test-api-key-3b71"
HMAC_KEY = "gw-test-hmac-key-5d09"
SECRETS = f"thuong-lam-one-stop: {{api_key: {API_KEY}}}\nlang-son-dossiers: {{hmac_key: {HMAC_KEY}}}\n"


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    metrics_url: str
    """The runtime's own server (`GATEWAY_HTTP_PORT`): `/metrics`, and the probes again."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self, field_name: str) -> int:
        """A `/proc/<pid>/status` figure in kB (VmRSS: resident now, VmHWM: the peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field_name} for pid {self.pid}")


@dataclass
class Site:
    """A namespace with the raw and claims topics, the files every gateway of the test reads, its gateways."""

    bootstrap: str
    namespace: str
    files: Path
    running: list[Gateway] = field(default_factory=list)

    def start(self, instance: str = "g1", ready: bool = True, **env: str) -> Gateway:
        port = env.pop("GATEWAY_PORT", str(free_port()))
        metrics_port = int(env.pop("GATEWAY_HTTP_PORT", str(free_port())))
        log = self.files / f"gateway-{instance}-{port}.log"
        proc = start_service("services.gateway", {
            "KAFKA_BOOTSTRAP": self.bootstrap, "GATEWAY_NAMESPACE": self.namespace, "GATEWAY_PORT": port,
            "GATEWAY_HTTP_PORT": str(metrics_port),
            "GATEWAY_INSTANCE_ID": instance, "GATEWAY_SOURCES_FILE": str(self.files / "sources.yaml"),
            "GATEWAY_SECRETS_FILE": str(self.files / "secrets.yaml"), **env,
        }, log)
        scheme = "https" if "GATEWAY_TLS_CERTFILE" in env else "http"
        gateway = Gateway(proc, f"{scheme}://127.0.0.1:{port}", log, f"http://127.0.0.1:{metrics_port}")
        self.running.append(gateway)
        if ready:
            wait_ready(gateway)
        return gateway

    def stop(self, gateway: Gateway) -> int:
        return stop_service(gateway.proc)


def wait_ready(gateway: Gateway, context: ssl.SSLContext | None = None, timeout: float = 60) -> None:
    """Wait for /readyz 200 (broker answered, claims restored); fail at once if the process exits."""

    def ready() -> bool:
        if gateway.proc.poll() is not None:
            pytest.fail(f"the gateway exited with {gateway.proc.returncode}: {gateway.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(gateway.url + "/readyz", timeout=2, context=context) as r:
                return r.status == 200
        except OSError:
            return False

    eventually(ready, timeout=timeout, interval=0.2, what=f"{gateway.url}/readyz 200")


@pytest.fixture
def site(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Site]:
    namespace = "gw" + naming.unique()
    (tmp_path / "sources.yaml").write_text(REGISTRY, encoding="utf-8")
    (tmp_path / "secrets.yaml").write_text(SECRETS, encoding="utf-8")
    specs = [scoped(t, namespace) for t in (*RAW.values(), GATEWAY_CLAIMS)]
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), specs))
    here = Site(kafka_bootstrap, namespace, tmp_path)
    try:
        yield here
    finally:
        for gateway in here.running:
            stop_service(gateway.proc)


@pytest.fixture
def served() -> Iterator[int]:
    """The port of the gateway's own server (its `server_config`, an in-process app, no broker) on loopback, served
    in a thread: for raw-socket tests."""
    with serving(GatewaySettings(port=free_port())) as port:
        yield port


@contextlib.contextmanager
def serving(settings: GatewaySettings,
            new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
            publisher: Recording | None = None) -> Iterator[int]:
    """`served` with the settings given (`settings.port` free, on loopback), on a loop `new_loop` makes; what it
    publishes is kept by `publisher` (a new `Recording` unless given)."""
    publisher = publisher if publisher is not None else Recording()
    server = _Server(server_config(settings, create_app(settings, UNIT_REGISTRY, CREDENTIALS, publisher,
                                                        clock=Clock(), claims=MemoryClaims(Clock()))))
    loop = new_loop()
    serving = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    serving.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield settings.port
    finally:
        server.should_exit = True
        serving.join(timeout=15)
        loop.close()
