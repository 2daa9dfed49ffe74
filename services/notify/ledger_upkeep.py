"""The ledger's checks and chores in the service: the layout it relies on, and pruning on a schedule."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Gauge

from services.notify.ledger import Ledger
from services.notify.settings import NotifySettings

log = structlog.get_logger("notify.ledger")
PRUNE_BATCH = 10_000
"""Ids forgotten per partition per step: a step is a short synchronous stretch, then the loop yields."""
LEDGER_IDS = Gauge("notify_ledger_ids", "Ledger ids held by this worker (its partitions only), done or deferred",
                   ["state"])


class LedgerLayoutError(Exception):
    """The ledger topic's partition count differs from an input topic's: entries would miss their owner."""


async def aligned_partitions(producer: AIOKafkaProducer, ledger: str, inputs: Sequence[str]) -> int:
    """The ledger's partition count, once checked equal to every input topic's (ADR 0019)."""
    count = len(await producer.partitions_for(ledger))
    others = {topic: len(await producer.partitions_for(topic)) for topic in inputs}
    wrong = sorted(topic for topic, n in others.items() if n != count)
    if wrong:
        raise LedgerLayoutError(f"ledger has {count} partitions, unlike {', '.join(wrong)}")
    return count


async def prune_loop(ledger: Ledger, settings: NotifySettings) -> None:
    """Every `ledger_prune_every_s`, forget the done ids older than the window, a batch at a time."""
    while True:
        await asyncio.sleep(settings.ledger_prune_every_s)
        pruned = 0
        while (step := ledger.prune(PRUNE_BATCH)) > 0:
            pruned += step
            await asyncio.sleep(0)
        LEDGER_IDS.labels("done").set(len(ledger.done))
        LEDGER_IDS.labels("deferred").set(len(ledger.deferred))
        if pruned:
            log.info("notify.ledger_pruned", ids=pruned, partitions=len(ledger.held))
