"""One HTTP server per service: `/metrics` (Prometheus), `/healthz` (alive), `/readyz` (ready to do its job).

`/healthz` answers 200 while the event loop runs (a wedged loop cannot answer) and 503 while the runtime restarts
run after run without any getting anywhere (`runtime.supervise`);
`/readyz` answers 200 only while the worker is assigned, restored and consuming,
503 with the reason otherwise. The metrics service adds its commune figures to
`/metrics` through `extra`.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.common.health import Health

Extra = Callable[[], str]
"""More exposition text, rendered at scrape time, put before the process's own metrics."""


def application(health: Health, extra: Extra | None = None) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = (extra() if extra else "") + generate_latest(REGISTRY).decode()
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(health.liveness()), content_type="application/json",
                            status=200 if health.alive else 503)

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(health.report()), content_type="application/json",
                            status=200 if health.ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(health: Health, host: str, port: int, extra: Extra | None = None) -> web.AppRunner:
    """Start the server; the caller owns the runner (`await runner.cleanup()`)."""
    runner = web.AppRunner(application(health, extra), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(exc.errno, f"cannot serve /metrics on {host}:{port}: {exc.strerror}") from None
    return runner
