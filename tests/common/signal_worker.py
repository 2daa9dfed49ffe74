"""A tiny service for test_signals.py: `python -m tests.common.signal_worker MARKER` runs `runtime.main`.

The worker writes "started" to MARKER once running (the stop signals are handled by
then), waits for `supervisor.stop`, then writes "stopped" and returns. No broker.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.common import runtime
from services.common.settings import ServiceSettings


def run(marker: Path) -> None:
    async def worker(supervisor: runtime.Supervisor) -> None:
        await asyncio.to_thread(marker.write_text, "started")
        await supervisor.stop.wait()
        await asyncio.to_thread(marker.write_text, "stopped")

    runtime.main("signal-test", ServiceSettings(http_port=0, log_level="WARNING"), worker)


if __name__ == "__main__":
    run(Path(sys.argv[1]))
