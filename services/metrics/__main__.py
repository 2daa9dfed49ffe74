"""`python -m services.metrics`: run one metrics worker until SIGTERM/SIGINT, /metrics on METRICS_METRICS_PORT.

A Kafka failure ends the worker's clients; it is then started afresh (state
rebuilt from the changelog) with exponential back-off. Anything else crashes
the process loudly.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
import uvloop
from aiokafka.errors import KafkaError

from services.common.logging import configure
from services.metrics.http import serve
from services.metrics.settings import MetricsSettings
from services.metrics.worker import MetricsWorker

log = structlog.get_logger("metrics")


async def main() -> None:
    settings = MetricsSettings()
    configure(settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = MetricsWorker(settings)
    runner = await serve(worker, settings.metrics_host, settings.metrics_port)
    backoff = 0.5
    try:
        while not stop.is_set():
            try:
                await worker.run(stop)
                return
            except KafkaError as exc:
                log.error("metrics.kafka_error", error=type(exc).__name__, retry_in=backoff)
                worker.revoke()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 15.0)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(main())
