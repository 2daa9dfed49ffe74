"""Waiting for specific records on a topic (the topics of the integrator stack are shared by its tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import ConsumerRecord

from tests.kafkatools import read_all
from tests.waiting import eventually

Rec = ConsumerRecord[bytes, bytes]


def ce_id(rec: Rec) -> str | None:
    return next((v.decode() for k, v in rec.headers if k == "ce_id"), None)


def read(bootstrap: str, topic: str) -> list[Rec]:
    """Every committed record of `topic` now (read_committed, until nothing new for half a second)."""
    return asyncio.run(read_all(bootstrap, topic, idle=0.5, timeout=10))


def wait_for(bootstrap: str, topic: str, want: Callable[[list[Rec]], bool], timeout: float = 30) -> list[Rec]:
    """Re-read `topic` until `want(records)` holds and return those records; fail if it never does."""

    def wanted() -> tuple[list[Rec]]:  # a tuple: truthy even when the wanted records are none
        records = read(bootstrap, topic)
        assert want(records), f"not yet the wanted records among the {len(records)} on {topic}"
        return (records,)

    return eventually(wanted, timeout=timeout, interval=0.5, what=f"the wanted records on {topic}")[0]
