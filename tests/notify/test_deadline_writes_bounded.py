"""The deadline tracker's writes end the run within `NOTIFY_DEADLINE_ACK_TIMEOUT_S` also while the producer has no
metadata for the topic: `send` itself waited the client's request timeout (40 s) for it with the broker gone, and
the bound, which covered only the acknowledgements, was not kept (found timing tests/notify/test_notify_stop_outage).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from services.notify.deadline_settings import DeadlineSettings
from services.notify.deadline_worker import DeadlineWorker, WritesUnacknowledged
from services.notify.settings import NotifySettings

pytestmark = pytest.mark.unit


class NoMetadata:
    """A producer whose `send` waits for the topic's metadata, which never comes (the broker gone); the first
    `taken` records are handed over at once (their futures never done)."""

    def __init__(self, taken: int) -> None:
        self.taken, self.futures = taken, []

    async def send(self, *_: Any, **__: Any) -> asyncio.Future[Any]:
        if len(self.futures) >= self.taken:
            await asyncio.Event().wait()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


@pytest.mark.parametrize("taken", [0, 1])
async def test_a_send_waiting_for_metadata_ends_the_run_within_the_bound(tmp_path: Path, taken: int) -> None:
    worker = DeadlineWorker(NotifySettings(bootstrap="127.0.0.1:1"),
                            DeadlineSettings(state_dir=tmp_path, ack_timeout_s=0.2))
    producer = NoMetadata(taken)
    changes: list[Any] = [(0, (b"k1", b"v1")), (1, (b"k2", b"v2"))]
    with pytest.raises(WritesUnacknowledged, match=f"{2 - taken} of 2 changelog records not taken"):
        await asyncio.wait_for(worker._write(producer, [], changes), timeout=10)  # type: ignore[arg-type]
    assert len(producer.futures) == taken
