"""The ledger's checks and chores in the service: the layout it relies on, and pruning on a schedule."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Gauge

from schemas.topics import CANONICAL, NOTIFY_ALERTS, NOTIFY_LEDGER, NOTIFY_REPLAYS, TopicSpec
from services.notify.ledger import Ledger
from services.notify.settings import NotifySettings

log = structlog.get_logger("notify.ledger")
DAY_MS = 86_400_000
PRUNE_BATCH = 10_000
"""Ids forgotten per partition per step: a step is a short synchronous stretch, then the loop yields."""
LEDGER_IDS = Gauge("notify_ledger_ids", "Ledger ids held by this worker (its partitions only), done or deferred",
                   ["state"])


class LedgerLayoutError(Exception):
    """The ledger topic cannot serve the design: a partition count unlike an input topic's (entries would miss
    their owner), or a retention shorter than the pruning window."""


async def aligned_partitions(producer: AIOKafkaProducer, ledger: str, inputs: Sequence[str]) -> int:
    """The ledger's partition count, once checked equal to every input topic's (ADR 0020)."""
    count = len(await producer.partitions_for(ledger))
    others = {topic: len(await producer.partitions_for(topic)) for topic in inputs}
    wrong = sorted(topic for topic, n in others.items() if n != count)
    if wrong:
        raise LedgerLayoutError(f"ledger has {count} partitions, unlike {', '.join(wrong)}")
    return count


BROKER_DEFAULT_MS = 7 * DAY_MS
"""A topic's `retention.ms` and `segment.ms` when the registry sets none: the broker's defaults (7 days each;
`log.retention.hours=168` in infra/kafka)."""
INPUTS: tuple[TopicSpec, ...] = (*CANONICAL.values(), NOTIFY_ALERTS, NOTIFY_REPLAYS)
"""The topics whose records notify derives notification ids from."""


def readable_ms(topic: TopicSpec) -> int:
    """How long a record of `topic` can still be read after it was appended: its retention, plus its segment's roll
    (Kafka deletes a record with its segment, once the segment's newest record is past the retention)."""
    return (int(topic.config.get("retention.ms", BROKER_DEFAULT_MS))
            + int(topic.config.get("segment.ms", BROKER_DEFAULT_MS)))


def keep_window_ms(keep_days: float, ledger: TopicSpec = NOTIFY_LEDGER, inputs: Sequence[TopicSpec] = INPUTS) -> int:
    """The pruning window in ms, refused if longer than the ledger topic keeps its entries, or shorter than an input
    record stays readable: a record read again after its done id was forgotten (offsets reset, or expired) would
    be sent again (ADR 0020)."""
    keep_ms = int(keep_days * DAY_MS)
    retention = int(ledger.config.get("retention.ms", "-1"))
    if 0 <= retention < keep_ms:
        raise LedgerLayoutError(f"ledger window of {keep_days:g} days exceeds the ledger topic's retention "
                                f"({retention / DAY_MS:g} days): a restore would miss ids still needed "
                                "(NOTIFY_LEDGER_KEEP_DAYS)")
    longest = max(inputs, key=readable_ms)
    if keep_ms < readable_ms(longest) + DAY_MS:
        raise LedgerLayoutError(
            f"ledger window of {keep_days:g} days is shorter than {longest.name}'s records stay readable "
            f"({readable_ms(longest) / DAY_MS:g} days, retention and segment) and a day: a record read again after "
            f"its ids were forgotten would be notified twice (NOTIFY_LEDGER_KEEP_DAYS)")
    return keep_ms


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
