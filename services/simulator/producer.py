"""The thin shell: paces the generated stream onto the raw topics with a Kafka producer, and reports progress.

Progress shows counts only - never a record's content, which carries personal data.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaProducer

from schemas.admin import communes_of
from schemas.events import Family
from schemas.times import VIETNAM
from schemas.topics import RAW, scoped
from services.common import clients
from services.common.admin import ensure_topics
from services.common.closing import close_within, start_within
from services.common.stopping import STOPPED, Stopped, unless_stopped
from services.simulator.generate import Emitted, TrafficConfig, traffic
from services.simulator.profiles import Pacer
from services.simulator.settings import SimulatorSettings

log = structlog.get_logger("simulator")
T = TypeVar("T")


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
    unsent: int = 0
    """Records sent but not acknowledged when a stop came (the broker did not answer): perhaps lost."""

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
    clock: Callable[[], float] = time.monotonic, pacer: Pacer | None = None,
) -> Progress:
    """Send records at `rate`/s (or as `pacer` says) until `duration` s have passed (0 = forever) or `stop` is set.

    Waits for every send to be acknowledged before returning, unless `stop` is set meanwhile: a broker that does not
    answer must not keep a stopping simulator (`Progress.unsent` counts the records then left unacknowledged).
    """
    due: Callable[[int], float] = pacer.due if pacer is not None else (lambda n: n / rate)
    async with StopCuts(stop) as cut_short:
        return await _pump(stream, sender, topics, due, duration, stop, on_progress, every, clock, cut_short)


async def _pump(stream: Iterator[Emitted], sender: Sender, topics: dict[Family, str], due: Callable[[int], float],
                duration: float, stop: asyncio.Event, on_progress: Callable[[Progress], None], every: float,
                clock: Callable[[], float], cut_short: StopCuts) -> Progress:
    progress = Progress(started=clock())
    next_report = progress.started + every
    inflight: list[Awaitable[object]] = []
    for emitted in stream:
        now = clock()
        if stop.is_set() or (duration and now - progress.started >= duration):
            break
        ahead = progress.started + due(progress.total) - now
        if ahead > 0.002:
            try:
                await asyncio.wait_for(stop.wait(), ahead)
                break
            except TimeoutError:
                pass
        r = emitted.record
        queued = await cut_short(sender.send(topics[r.family], r.value, r.key, r.headers))
        if isinstance(queued, Stopped):  # the producer's buffer stayed full until the stop
            break
        inflight.append(queued)
        progress.add(emitted)
        if len(inflight) >= 2000:
            if not await acknowledged(inflight, cut_short, progress):
                return progress
            inflight.clear()
        if clock() >= next_report:
            on_progress(progress)
            next_report += every
    await acknowledged(inflight, cut_short, progress)
    return progress


class StopCuts:
    """Awaits that `stop` cuts short, at no cost per await: one watcher task cancels the owner's task if the stop
    comes while it waits in one (a send waiting for room in a full buffer, acknowledgements from a broker gone)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop, self.waiting, self.cut = stop, False, False
        self.owner: asyncio.Task[Any] | None = None
        self.watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StopCuts:
        self.owner = asyncio.current_task()
        self.watcher = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.watcher is not None
        self.watcher.cancel()

    async def _watch(self) -> None:
        await self.stop.wait()
        if self.waiting and self.owner is not None:
            self.cut = True
            self.owner.cancel()

    async def __call__(self, step: Awaitable[T]) -> T | Stopped:
        """`step`'s result, or `STOPPED` if the stop came first (the step then cancelled, or never begun)."""
        if self.stop.is_set():
            if inspect.iscoroutine(step):
                step.close()
            return STOPPED
        self.waiting = True
        try:
            return await step
        except asyncio.CancelledError:
            if not self.cut:  # somebody else's cancellation
                raise
            self.cut = False
            assert self.owner is not None
            self.owner.uncancel()
            return STOPPED
        finally:
            self.waiting = False


async def acknowledged(inflight: list[Awaitable[object]], cut_short: StopCuts, progress: Progress) -> bool:
    """Wait for every send of `inflight` to be acknowledged; False if the stop came first (the rest counted unsent,
    their outcomes left to the producer's stop)."""
    gathering = asyncio.gather(*inflight)
    await cut_short(asyncio.shield(gathering))
    if gathering.done():
        gathering.result()
        return True
    gathering.add_done_callback(lambda g: g.cancelled() or g.exception())
    progress.unsent = sum(1 for f in inflight if not (isinstance(f, asyncio.Future) and f.done()))
    return False


class _AioSender:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Awaitable[object]:
        return await self.producer.send(topic, value, key=key, headers=headers)


async def run(settings: SimulatorSettings, stop: asyncio.Event) -> Progress:
    specs = {family: scoped(RAW[family], settings.namespace) for family in settings.families}
    if await unless_stopped(ensure_topics(settings, specs.values()), stop) is STOPPED:
        return Progress(started=time.monotonic())
    config = TrafficConfig(
        province=settings.province, national=settings.national, invalid_share=settings.invalid_share,
        day_events=settings.day_events, backfill_days=settings.backfill_days, portal_share=settings.portal_share,
        families=settings.families,
    )
    now = settings.now or datetime.now(UTC)
    stream = traffic(settings.seed, now, config)
    pacer = Pacer(settings.profile, settings.mean_rate, now, settings.speed)
    producer = clients.producer(settings, client_id="commune-bus-simulator", linger_ms=10)
    try:
        # StartUnanswered once no producer id came within the bound (it waited for ever, silent; audit)
        connected = await unless_stopped(start_within("simulator", "producer", producer), stop)
    except BaseException:
        await close_within("simulator", "producer", producer.stop)
        raise
    if connected is STOPPED:
        await close_within("simulator", "producer", producer.stop)
        return Progress(started=time.monotonic())
    started = time.monotonic()

    def report(p: Progress) -> None:
        elapsed = time.monotonic() - started
        log.info("simulator.progress", **p.fields(time.monotonic()), target_rate=round(pacer.rate_at(elapsed), 2),
                 sim_clock=pacer.sim_at(elapsed).astimezone(VIETNAM).isoformat(timespec="minutes"))

    log.info("simulator.started", province="all" if settings.national else settings.province,
             communes=sum(len(communes_of(p)) for p in config.provinces),
             profile=settings.profile, mean_rate=round(settings.mean_rate, 3),
             bootstrap=settings.bootstrap, rate=round(pacer.rate_at(0), 3),
             duration=settings.duration, invalid_share=settings.invalid_share, namespace=settings.namespace,
             day_seconds=settings.day_seconds, topics=sorted(s.name for s in specs.values()))
    try:
        progress = await pump(
            stream, _AioSender(producer), {f: s.name for f, s in specs.items()}, settings.mean_rate, settings.duration,
            stop, report, settings.progress_every, pacer=pacer,
        )
    finally:
        await close_within("simulator", "producer", producer.stop)
    log.info("simulator.stopped", **progress.fields(time.monotonic()), defects=dict(sorted(progress.defects.items())),
             unsent=progress.unsent)
    return progress
