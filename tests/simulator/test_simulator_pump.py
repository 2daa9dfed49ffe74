"""The shell's pacing loop with an injected sender: routing by family, stop and duration honoured."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from schemas.events import Family
from services.simulator.generate import DEFAULT_NOW, TrafficConfig, traffic
from services.simulator.producer import pump
from services.simulator.profiles import Pacer
from tests.waiting import eventually_async

pytestmark = pytest.mark.unit
TOPICS = {f: f"t.{f.value}" for f in Family}


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class TickingClock:
    """Advances 10 ms each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


async def test_pump_routes_each_family_to_its_topic_and_stops_at_duration() -> None:
    """Records go to their family's topic in stream order; the loop ends once `duration` has passed."""
    stream = traffic(1, DEFAULT_NOW, TrafficConfig(invalid_share=0.1))
    expected = [e.record for e in itertools.islice(traffic(1, DEFAULT_NOW, TrafficConfig(invalid_share=0.1)), 400)]
    sender = RecordingSender()
    progress = await pump(stream, sender, TOPICS, rate=1e9, duration=1.0, stop=asyncio.Event(), clock=TickingClock())
    assert 10 < progress.total == len(sender.sent) < 400
    assert sender.sent == [(TOPICS[r.family], r.key, r.value) for r in expected[: len(sender.sent)]]
    assert sum(progress.defects.values()) > 0


async def test_pump_sends_nothing_once_stopped() -> None:
    """A set stop event ends the loop before the next record."""
    stop = asyncio.Event()
    stop.set()
    sender = RecordingSender()
    progress = await pump(traffic(1, DEFAULT_NOW), sender, TOPICS, rate=50, duration=0, stop=stop)
    assert progress.total == 0 and sender.sent == []


async def test_pump_paces_to_the_rate() -> None:
    """At 200 records/s, stopping after 0.25 s has let about 50 through, not the whole stream."""
    stop = asyncio.Event()
    sender = RecordingSender()
    asyncio.get_running_loop().call_later(0.25, stop.set)
    progress = await pump(traffic(1, DEFAULT_NOW), sender, TOPICS, rate=200, duration=0, stop=stop)
    assert 1 <= progress.total <= 200


async def test_pump_follows_the_pacer_of_the_peak_hour() -> None:
    """With the same mean rate, the peak-hour pacer lets through several times what the flat one does in ~0.3 s,
    each per second it ran (a loaded machine's stop comes late: 71 let through in CI, the flat pacer's 100/s kept)."""
    loop, counts, rates = asyncio.get_running_loop(), {}, {}
    for profile in ("flat", "peak"):
        stop = asyncio.Event()
        pacer = Pacer(profile, mean_rate=100.0, sim_start=DEFAULT_NOW, speed=1.0)
        began = loop.time()
        loop.call_later(0.3, stop.set)
        progress = await pump(traffic(1, DEFAULT_NOW), RecordingSender(), TOPICS, rate=100.0, duration=0, stop=stop,
                              pacer=pacer)
        counts[profile], rates[profile] = progress.total, progress.total / (loop.time() - began)
    assert counts["flat"] >= 1 and rates["flat"] <= 100 * 1.3, (counts, rates)
    assert rates["peak"] > 2.5 * rates["flat"], (counts, rates)


class SilentBroker:
    """Takes every record and never acknowledges one, as a producer does while the broker does not answer; after
    `buffer` records its buffer is full and `send` itself waits for ever."""

    def __init__(self, buffer: int = 10**9) -> None:
        self.buffer, self.sent = buffer, 0
        self.pending: list[asyncio.Future[None]] = []

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        if self.sent >= self.buffer:
            await asyncio.Event().wait()
        self.sent += 1
        self.pending.append(asyncio.get_running_loop().create_future())
        return self.pending[-1]


@pytest.mark.parametrize("buffer", [10**9, 50], ids=["acknowledgements-pending", "buffer-full"])
async def test_a_stop_ends_the_pump_while_the_broker_does_not_answer(buffer: int) -> None:
    """Records sent, none acknowledged (or the buffer full): a stop still ends the pump at once, the records left
    unacknowledged counted as unsent (before: it waited for acknowledgements for ever, and SIGTERM did nothing)."""
    stop, silent = asyncio.Event(), SilentBroker(buffer)
    pumping = asyncio.create_task(pump(traffic(1, DEFAULT_NOW), silent, TOPICS, rate=2000, duration=0, stop=stop))
    await eventually_async(lambda: silent.sent >= min(buffer, 200), timeout=5, interval=0.01, what="records sent")
    await asyncio.sleep(0.05)  # the pump goes on sending (or waits on the full buffer)
    stop.set()
    progress = await asyncio.wait_for(pumping, timeout=2)
    assert progress.total == silent.sent
    assert progress.unsent == silent.sent > 0
