"""`python -m services.intake`: run one intake worker until SIGTERM/SIGINT.

A Kafka failure (broker restart, fencing, lost coordinator) ends the worker's
clients and aborts the open transaction; the worker is then started afresh,
restoring its state from Kafka, with exponential back-off. Anything else is a
bug: it crashes the process loudly.
"""

from __future__ import annotations

import asyncio
import signal
from functools import partial

import structlog
import uvloop
from aiokafka.errors import KafkaError
from prometheus_client import start_http_server

from services.common.logging import configure
from services.intake.settings import IntakeSettings
from services.intake.worker import IntakeWorker, SourcePolicy, allow_all
from services.sources import is_allowed, load_registry

log = structlog.get_logger("intake")


def source_policy(settings: IntakeSettings) -> SourcePolicy:
    """The source registry when `INTAKE_SOURCES_FILE` names one (a bad file stops the worker); else allow all."""
    if not settings.sources_file:
        return allow_all
    registry = load_registry(settings.sources_file)
    return partial(is_allowed, registry)


async def supervise(settings: IntakeSettings, stop: asyncio.Event) -> None:
    backoff = 0.5
    while not stop.is_set():
        try:
            await IntakeWorker(settings, source_policy(settings)).run(stop)
            return
        except KafkaError as exc:
            log.error("intake.kafka_error", error=type(exc).__name__, detail=str(exc)[:300], retry_in=backoff)
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, 15.0)


async def main() -> None:
    settings = IntakeSettings()
    configure(settings.log_level)
    start_http_server(settings.metrics_port, addr=settings.metrics_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await supervise(settings, stop)


if __name__ == "__main__":
    uvloop.run(main())
