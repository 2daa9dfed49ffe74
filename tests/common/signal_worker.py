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


def run(marker: Path, stuck: bool = False, deadline_s: float = 25.0) -> None:
    """`stuck`: once stopped, the worker never returns (a stop waiting on a broker gone)."""
    async def worker(supervisor: runtime.Supervisor) -> None:
        await asyncio.to_thread(marker.write_text, "started")
        await supervisor.stop.wait()
        await asyncio.to_thread(marker.write_text, "stopping")
        if stuck:
            await asyncio.Event().wait()
        await asyncio.to_thread(marker.write_text, "stopped")

    runtime.main("signal-test", ServiceSettings(http_port=0, log_level="WARNING", stop_deadline_s=deadline_s), worker)


if __name__ == "__main__":
    run(Path(sys.argv[1]), stuck=len(sys.argv) > 2 and sys.argv[2] == "stuck",
        deadline_s=float(sys.argv[3]) if len(sys.argv) > 3 else 25.0)
