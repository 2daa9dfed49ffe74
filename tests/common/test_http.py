"""/healthz, /readyz and /metrics of services/common/http.py on a real loopback server (no broker)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.common import http
from services.common.health import Health

pytestmark = pytest.mark.unit  # loopback only: needs no broker

EXTRA = "# HELP commune_test_figure A figure the service renders at scrape time\ncommune_test_figure 42\n"


@pytest.fixture
async def server() -> AsyncIterator[tuple[Health, str]]:
    """A server on a free 127.0.0.1 port (the kernel picks it), with its Health and base URL."""
    health = Health(f"test-{uuid.uuid4().hex[:8]}")
    runner = await http.serve(health, "127.0.0.1", 0, extra=lambda: EXTRA)
    try:
        host, port = runner.addresses[0][:2]
        yield health, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_healthz_answers_while_the_loop_runs(server: tuple[Health, str]) -> None:
    """/healthz is 200 with the service name even before the worker is ready."""
    health, url = server
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"service": health.service, "alive": True, "detail": "running"}


async def test_healthz_is_503_while_the_runtime_restarts_runs_that_get_nowhere(server: tuple[Health, str]) -> None:
    """/healthz turns 503 with the reason when the runtime says so, and 200 again on the next progress."""
    health, url = server
    async with aiohttp.ClientSession() as session:
        health.set_alive(False, "10 runs in a row failed without progress")
        async with session.get(f"{url}/healthz") as response:
            assert response.status == 503
            assert (await response.json())["detail"] == "10 runs in a row failed without progress"
        health.committed()
        async with session.get(f"{url}/healthz") as response:
            assert response.status == 200


async def test_readyz_is_503_until_set_ready_then_200(server: tuple[Health, str]) -> None:
    """/readyz is 503 with the reason while starting, 200 once ready, 503 again after a revoke."""
    health, url = server
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["detail"] == "starting"
        health.set_ready(True, "assigned, restored, consuming")
        async with session.get(f"{url}/readyz") as response:
            assert response.status == 200
            assert await response.json() == {"service": health.service, "ready": True,
                                             "detail": "assigned, restored, consuming", "last_commit": None}
        health.set_ready(False, "partitions revoked")
        async with session.get(f"{url}/readyz") as response:
            assert response.status == 503


async def test_metrics_carry_extra_and_the_runtime_metrics(server: tuple[Health, str]) -> None:
    """/metrics is Prometheus text with the service's `extra` figures first, then the process's own metrics."""
    health, url = server
    health.set_ready(True, "consuming")
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        body = await response.text()
    assert body.startswith(EXTRA)
    assert f'commune_service_ready{{service="{health.service}"}} 1.0' in body


async def test_a_taken_port_is_a_clear_error() -> None:
    """Serving on a port already bound fails with an OSError naming host and port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve /metrics on 127.0.0.1:{port}"):
            await http.serve(Health("test-taken"), "127.0.0.1", port)
