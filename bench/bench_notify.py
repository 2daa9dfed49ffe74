"""notify benchmark: one worker against a local HTTP SMS gateway, on the real broker.

Prints side by side: (a) notifications/s of one worker draining a 5,000-event backlog;
(b) event -> provider latency p50/p99 at a steady 500 events/s; (c) emergency p50/p99
while 5,000 routine notifications are queued behind a 300/s SMS rate limit, next to the
routine latency in the same window. Events are written straight to the canonical topic
(intake's cost is in bench_intake). Quiet hours are off: the targets are for daytime.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import naming
from schemas.announcement import AnnouncementScheduledEvent
from schemas.dossier import DossierStatusChanged
from schemas.envelope import Event
from schemas.wire import encode
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.notify import rules
from services.notify.directory import Directory
from services.notify.fake_providers import FakeProviders
from services.notify.subscribers import Registry
from services.notify.topics import Names

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
CONNECTION = KafkaConnection(bootstrap=BOOTSTRAP)
ROOT = Path(__file__).resolve().parent.parent
DIRECTORY = """
[communes."*".villages]
"*" = [{ ref = "village:head", channel = "sms", phone = "0900000002" }]
[communes."*".clusters]
"*" = [{ ref = "operator:loa", channel = "sms", phone = "0900000001" }]
"""


def dossier(i: int, tag: str) -> DossierStatusChanged:
    now = datetime.now(UTC)
    return DossierStatusChanged(
        id=f"{tag}-{i}", source="/communes/02269/one-stop", time=now, subject=f"B-{i}", commune="02269", province="08",
        data={"dossier_code": f"B-{tag}-{i}", "procedure_code": "1.001234", "procedure_name": "Đăng ký khai sinh",
              "channel": "counter", "status": 2, "received_at": now, "due_at": now + timedelta(days=3),
              "applicant": {"phone": f"09{i % 100000000:08d}", "preferred_locale": "vi"}})


def storm(i: int, tag: str = "") -> AnnouncementScheduledEvent:
    now = datetime.now(UTC)
    return AnnouncementScheduledEvent(
        id=f"storm-{tag}{i}", source="/communes/02269/loudspeakers", time=now, subject=f"A-{tag}{i}", commune="02269",
        province="08", data={"announcement_id": f"A-{tag}{i}", "category": "storm", "title": "Bão số 13",
                             "target_clusters": ["C1"], "starts_at": now + timedelta(minutes=30)})


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


class Run:
    """One notify worker process on a fresh namespace, fed by this process, sending to a local fake gateway."""

    def __init__(self, fake: FakeProviders, **env: str) -> None:
        self.ns = naming.namespace("notify")
        self.names, self.fake, self.env = Names(self.ns), fake, env
        self.sent_at: dict[str, float] = {}
        self.directory = Directory.model_validate(__import__("tomllib").loads(DIRECTORY))

    async def start(self) -> None:
        await ensure_topics(CONNECTION, self.names.specs)
        self._launch()
        self.producer = clients.producer(CONNECTION, client_id="bench-notify", linger_ms=1, acks=1,
                                         enable_idempotence=False)
        await self.producer.start()

    def _launch(self) -> None:
        """The worker process (no HTTP server), its output in a log file named after the namespace."""
        d = Path(tempfile.mkdtemp()) / "directory.toml"
        d.write_text(DIRECTORY, encoding="utf-8")
        env = {**os.environ, "KAFKA_BOOTSTRAP": BOOTSTRAP, "NOTIFY_NAMESPACE": self.ns, "NOTIFY_HTTP_PORT": "0",
               "NOTIFY_DIRECTORY_FILE": str(d), "NOTIFY_SMS_URL": self.fake.url, "NOTIFY_ZALO_URL": self.fake.url,
               "NOTIFY_QUIET_START": "00:00", "NOTIFY_QUIET_END": "00:00", **self.env}
        self.log = (Path(tempfile.gettempdir()) / f"{self.ns}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.notify"], env=env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    async def send(self, event: Event) -> list[str]:
        rec = encode(event)
        topic = self.names.announcement if isinstance(event, AnnouncementScheduledEvent) else self.names.dossier
        await self.producer.send(topic, rec.value, key=rec.key, headers=rec.headers)
        ids = [r.notification_id for r in rules.for_event(event, self.directory, Registry())]
        for nid in ids:
            self.sent_at[nid] = event.time.timestamp()
        return ids

    def latencies(self, ids: list[str]) -> list[float]:
        return [(self.fake.accepted[i].at - self.sent_at[i]) * 1000 for i in ids if i in self.fake.accepted]

    async def until(self, predicate: Callable[[], bool], within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(0.05)
        return False

    async def wait(self, ids: list[str], within: float) -> bool:
        return await self.until(lambda: all(i in self.fake.accepted for i in ids), within)

    async def warm_up(self) -> None:
        """One routine and one emergency notification through: both consumers have joined the group and are
        assigned. The routine one alone came through as soon as the routine consumer was, so the storm warnings were
        sent while the urgent consumer was still joining (one group: its join rebalanced both), and waited for it:
        emergency p99 ~2 s in every run since b9d6dc5 (2026-12-04), which let a routine send wait for the routine
        consumer only."""
        # of this run alone: the fake gateway is shared by the runs, and an id it accepted for an earlier one passes
        ids = await self.send(dossier(0, "warm" + self.ns)) + await self.send(storm(0, "warm" + self.ns))
        await self.producer.flush()
        if not await self.wait(ids, 60):
            raise RuntimeError("the warm-up notifications were not delivered within 60 s")

    async def stop(self) -> None:
        await self.producer.stop()
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


async def throughput_and_latency(fake: FakeProviders) -> tuple[float, list[float]]:
    run = Run(fake, NOTIFY_RATE_PER_S='{"sms": 100000}', NOTIFY_ROUTINE_WORKERS="64")
    await run.start()
    try:
        await run.warm_up()
        backlog = [nid for i in range(5000) for nid in await run.send(dossier(i, "tp"))]
        await run.producer.flush()
        t0 = time.monotonic()
        start_count = len(fake.accepted)
        await run.wait(backlog, 90)
        rate = (len(fake.accepted) - start_count) / (time.monotonic() - t0)
        await asyncio.sleep(1)
        ids: list[str] = []
        t0 = time.monotonic()
        for i in range(5000):  # 500 events/s for 10 s
            ids += await run.send(dossier(i, "lat"))
            if i % 50 == 49:
                await run.producer.flush()
                await asyncio.sleep(max(0.0, t0 + (i + 1) / 500 - time.monotonic()))
        await run.producer.flush()
        await run.wait(ids, 60)
        return rate, run.latencies(ids)
    finally:
        await run.stop()


async def emergency_under_backlog(fake: FakeProviders) -> tuple[list[float], list[float], int]:
    run = Run(fake, NOTIFY_RATE_PER_S='{"sms": 300}')
    await run.start()
    try:
        await run.warm_up()
        routine = [nid for i in range(5400) for nid in await run.send(dossier(i, "bk"))]
        await run.producer.flush()
        if not await run.until(lambda: sum(1 for i in routine if i in fake.accepted) >= 300, 300):
            raise RuntimeError("the routine backlog did not start draining")  # queued and draining: go on
        queued = sum(1 for i in routine if i not in fake.accepted)
        urgent: list[str] = []
        storms_from = time.time()  # the fake gateway's clock (`Received.at`)
        for i in range(100):  # 100 storm warnings at 20/s, 2 recipients each
            urgent += await run.send(storm(i))
            await run.producer.flush()
            await asyncio.sleep(0.05)
        await run.wait(urgent, 60)
        # the routine ones delivered while the emergencies were sent and delivered, not those before the first
        window = [i for i in routine if i in fake.accepted and fake.accepted[i].at >= storms_from]
        return run.latencies(urgent), run.latencies(window), queued
    finally:
        await run.stop()


async def run_all() -> None:
    fake = FakeProviders()
    await fake.start()
    try:
        rate, lat = await throughput_and_latency(fake)
        urgent, routine, queued = await emergency_under_backlog(fake)
    finally:
        await fake.stop()
    print(f"{'measure':58} {'value':>12}   target")
    print(f"{'notifications/s, one worker, 5,000 queued events':58} {rate:12.0f}   -")
    print(f"{'event->provider p50 at 500 events/s (ms)':58} {pct(lat, 50):12.1f}   -")
    print(f"{'event->provider p99 at 500 events/s (ms)':58} {pct(lat, 99):12.1f}   <= 100")
    print(f"{'emergency p50 with routine backlog (ms)':58} {pct(urgent, 50):12.1f}   -")
    print(f"{'emergency p99 with routine backlog (ms)':58} {pct(urgent, 99):12.1f}   <= 50")
    window = f"{pct(routine, 50):6.0f} /{pct(routine, 99):6.0f}"
    print(f"{'routine p50 / p99 in the same window (ms)':58} {window}   (queued)")
    print(f"{'routine notifications queued when emergencies started':58} {queued:12d}   >= 5,000*")
    print("* 5,400 routine events published at once (300 let through first) behind a 300/s SMS limit; "
          "emergencies use their own lane, and may borrow a burst from the SMS rate bucket both lanes share.")


def main() -> None:
    asyncio.run(run_all())


if __name__ == "__main__":
    main()
