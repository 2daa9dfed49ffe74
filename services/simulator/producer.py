"""The thin shell: paces the generated stream onto the raw topics with a Kafka producer, and reports progress.

Progress shows counts only - never a record's content, which carries personal data.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import structlog
from aiokafka import AIOKafkaProducer

from schemas.admin import communes_of
from schemas.events import Family
from schemas.times import VIETNAM
from schemas.topics import RAW, scoped
from services.common import clients
from services.common.admin import ensure_topics
from services.simulator.generate import Emitted, TrafficConfig, traffic
from services.simulator.settings import SimulatorSettings

log = structlog.get_logger("simulator")


class Sender(Protocol):
    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> Awaitable[object]: ...


@dataclass
class Progress:
    """What has been sent: counts by family and by defect, and the newest simulated event time."""

    started: float
    sent: Counter[str] = field(default_factory=Counter)
    defects: Counter[str] = field(default_factory=Counter)
    newest: datetime | None = None

    def add(self, emitted: Emitted) -> None:
        self.sent[emitted.record.family.value] += 1
        if emitted.defect is not None:
            self.defects[emitted.defect.value] += 1
        self.newest = emitted.at if self.newest is None else max(self.newest, emitted.at)

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def fields(self, now: float) -> dict[str, object]:
        """Log fields: counts and rates only."""
        elapsed = max(now - self.started, 1e-9)
        return {
            "sent": self.total, "rate": round(self.total / elapsed, 1), "invalid": sum(self.defects.values()),
            **{f"sent_{k.replace('-', '_')}": v for k, v in sorted(self.sent.items())},
            "sim_time": self.newest.astimezone(VIETNAM).isoformat(timespec="minutes") if self.newest else None,
        }


async def pump(
    stream: Iterator[Emitted], sender: Sender, topics: dict[Family, str], rate: float, duration: float,
    stop: asyncio.Event, on_progress: Callable[[Progress], None] = lambda p: None, every: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> Progress:
    """Send records at `rate`/s until `duration` s have passed (0 = forever) or `stop` is set; wait for delivery."""
    progress = Progress(started=clock())
    next_report = progress.started + every
    inflight: list[Awaitable[object]] = []
    for emitted in stream:
        now = clock()
        if stop.is_set() or (duration and now - progress.started >= duration):
            break
        ahead = progress.started + progress.total / rate - now
        if ahead > 0.002:
            try:
                await asyncio.wait_for(stop.wait(), ahead)
                break
            except TimeoutError:
                pass
        r = emitted.record
        inflight.append(await sender.send(topics[r.family], r.value, r.key, r.headers))
        progress.add(emitted)
        if len(inflight) >= 2000:
            await asyncio.gather(*inflight)
            inflight.clear()
        if clock() >= next_report:
            on_progress(progress)
            next_report += every
    await asyncio.gather(*inflight)
    return progress


class _AioSender:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Awaitable[object]:
        return await self.producer.send(topic, value, key=key, headers=headers)


async def run(settings: SimulatorSettings, stop: asyncio.Event) -> Progress:
    specs = {family: scoped(RAW[family], settings.namespace) for family in settings.families}
    await ensure_topics(settings, specs.values())
    config = TrafficConfig(
        province=settings.province, invalid_share=settings.invalid_share, day_events=settings.day_events,
        backfill_days=settings.backfill_days, portal_share=settings.portal_share, families=settings.families,
    )
    stream = traffic(settings.seed, datetime.now(UTC), config)
    producer = clients.producer(settings, client_id="commune-bus-simulator", linger_ms=10)
    await producer.start()
    log.info("simulator.started", province=settings.province, communes=len(communes_of(settings.province)),
             bootstrap=settings.bootstrap, rate=settings.rate,
             duration=settings.duration, invalid_share=settings.invalid_share, namespace=settings.namespace,
             day_seconds=settings.day_seconds, topics=sorted(s.name for s in specs.values()))
    try:
        progress = await pump(
            stream, _AioSender(producer), {f: s.name for f, s in specs.items()}, settings.rate, settings.duration,
            stop, lambda p: log.info("simulator.progress", **p.fields(time.monotonic())), settings.progress_every,
        )
    finally:
        await producer.stop()
    log.info("simulator.stopped", **progress.fields(time.monotonic()), defects=dict(sorted(progress.defects.items())))
    return progress
