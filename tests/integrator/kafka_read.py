"""Waiting for specific records on a topic (the topics of the integrator stack are shared by its tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import ConsumerRecord

from tests.kafkatools import read_all

Rec = ConsumerRecord[bytes, bytes]


def ce_id(rec: Rec) -> str | None:
    return next((v.decode() for k, v in rec.headers if k == "ce_id"), None)


def wait_for(bootstrap: str, topic: str, want: Callable[[list[Rec]], bool], timeout: float = 30) -> list[Rec]:
    """Re-read `topic` (read_committed) until `want(records)` holds or time runs out; returns the last read."""
    deadline = time.monotonic() + timeout
    while True:
        records = asyncio.run(read_all(bootstrap, topic, idle=0.5, timeout=10))
        if want(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)
