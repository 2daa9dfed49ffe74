"""Helpers of the cluster tests: a paced producer that survives a broker failover, scraping, and the tally line."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka.structs import RecordMetadata

from services.common import clients
from services.common.settings import KafkaConnection

Sent = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]  # topic, key, value, headers


@dataclass
class Feeder:
    """Sends `records` at `per_second` with one idempotent acks=all producer, in order, each chunk acknowledged
    before the next; `acked` counts the records acknowledged so far, `metadata` where each one landed.

    With `hold_last`, the last records wait for `release` before they go (then at the same pace): a test that
    brings a broker back releases them, so records are still sent after it returns however long its restart takes
    (CI: a restart of 37 s outlasted a 50 s stream that had started 12 s before the kill)."""

    bootstrap: str
    records: Sequence[Sent]
    per_second: float
    hold_last: int = 0
    acked: int = 0
    metadata: list[RecordMetadata] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> list[RecordMetadata]:
        producer = clients.producer(KafkaConnection(bootstrap=self.bootstrap), client_id="tests-cluster-feeder",
                                    linger_ms=5, max_request_size=12 * 1024 * 1024)
        await producer.start()
        chunk = max(1, int(self.per_second // 10))
        started = time.monotonic()
        try:
            for i in range(0, len(self.records), chunk):
                if self.hold_last and i >= len(self.records) - self.hold_last and not self.release.is_set():
                    await self.release.wait()
                    started = time.monotonic() - i / self.per_second  # the pace again from here, not a burst
                futures = [await producer.send(topic, value, key=key, headers=list(headers))
                           for topic, key, value, headers in self.records[i:i + chunk]]
                self.metadata.extend(await asyncio.gather(*futures))
                self.acked = len(self.metadata)
                await asyncio.sleep(max(0.0, started + (i + chunk) / self.per_second - time.monotonic()))  # the pace
            return self.metadata
        finally:
            await producer.stop()


def scrape(port: int) -> str:
    """The service's /metrics text, or "" while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of `name` (all label sets) in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass(frozen=True)
class Tally:
    """Jepsen-style accounting of one scenario: what was sent and what became of it."""

    scenario: str
    sent: int
    lost: int
    duplicated: int
    out_of_order: int | None  # None: order does not apply
    recovered_s: float
    restarts: float = 0.0

    def line(self) -> str:
        order = "n/a" if self.out_of_order is None else self.out_of_order
        return (f"{self.scenario}: sent {self.sent}, lost {self.lost}, duplicated {self.duplicated}, "
                f"out-of-order {order}, recovered in {self.recovered_s:.1f} s "
                f"(worker restarts {self.restarts:g})")
