"""`python -m services.intake`: run one intake worker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import start_http_server

from services.common.logging import configure
from services.intake.settings import IntakeSettings
from services.intake.worker import IntakeWorker


async def main() -> None:
    settings = IntakeSettings()
    configure(settings.log_level)
    start_http_server(settings.metrics_port, addr=settings.metrics_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await IntakeWorker(settings).run(stop)


if __name__ == "__main__":
    asyncio.run(main())
