"""The /metrics endpoint: the owned partitions' commune figures plus the worker's own health metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest

from services.metrics.exposition import CONTENT_TYPE, render
from services.metrics.worker import MetricsWorker


def scrape(worker: MetricsWorker, now: Callable[[], float]) -> str:
    """Everything one scrape returns (runs on the event loop, so it sees states between batches)."""
    return render(worker.exported(), now()) + generate_latest(REGISTRY).decode()


async def serve(worker: MetricsWorker, host: str, port: int) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=scrape(worker, worker.clock).encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
