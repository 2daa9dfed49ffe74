"""notify's delivery ledger, today's in-memory one beside the partition-aligned RocksDB one, on the real broker.

One ledger topic (6 partitions, entries in their commune's partition: 95% done ids, 5% deferred requests with
their redacted request, as notify writes them) is restored by each design in a child process of its own,
so resident memory is measured without the other's leftovers:

- today: every partition into a Python set (done ids) and dict (deferred requests), read by the shared
  changelog reader (the code of `ledger.py` / `ledger_feed.restore` before ADR 0020);
- new: the worker's ledger feed holding every partition (the same entries, so per-million figures compare),
  and holding one partition of six (what a worker of a 6-worker group restores).

Printed: restore seconds and RSS growth per million entries, and the cost of one deferred-release tick
with 50,000 deferred requests not yet due (full scan today, due-index prefix now). Size: LEDGER_BENCH_ENTRIES
(300,000 by default; figures per million are extrapolated linearly).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import naming
from schemas.notification import NotificationRequest
from services.common import clients
from services.common.admin import ensure_topics
from services.common.changelog import read_to_end
from services.common.partitioner import partition_for
from services.common.settings import KafkaConnection
from services.notify import rules
from services.notify.directory import Directory
from services.notify.ledger import Entry, Layout, Ledger
from services.notify.ledger_feed import LedgerFeed
from services.notify.ledger_store import RocksStores
from services.notify.personal import redact
from services.notify.subscribers import Registry
from services.notify.topics import Names

CONNECTION = KafkaConnection(bootstrap=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
ENTRIES = int(os.environ.get("LEDGER_BENCH_ENTRIES", "300000"))
PARTITIONS, DEFERRED_SHARE, TICK_DEFERRED = 6, 0.05, 50_000
ROOT = Path(__file__).resolve().parent.parent


class NoWrites:
    """The benchmarks only read the ledger: any write is a bug of the benchmark."""

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            partition: int | None = None, *, headers: object = None) -> object:
        raise AssertionError("the ledger benchmark writes nothing through the ledger")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sample_request(commune: str) -> NotificationRequest:
    from schemas.dossier import DossierStatusChanged

    now = datetime.now(UTC)
    event = DossierStatusChanged.model_validate({
        "id": "bench-0", "source": f"/communes/{commune}/one-stop", "time": now, "subject": "B-0", "commune": commune,
        "province": "08", "data": {"dossier_code": "B-0", "procedure_code": "1.001234", "procedure_name": "Khai sinh",
                                   "channel": "counter", "status": 2, "received_at": now,
                                   "due_at": now + timedelta(days=3),
                                   "applicant": {"phone": "0912345678", "preferred_locale": "vi"}}})
    request = rules.for_event(event, Directory(), Registry())[0]
    return redact(request).model_copy(update={"not_before": now + timedelta(hours=10)})


async def fill(topic: str) -> None:
    """ENTRIES ledger records, each in its commune's partition."""
    done = Entry(state="done", outcome="sent").model_dump_json(exclude_none=True).encode()
    template = sample_request("02269")
    producer = clients.producer(CONNECTION, client_id="bench-ledger", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    every = round(1 / DEFERRED_SHARE)
    try:
        pending = []
        for i in range(ENTRIES):
            commune = f"{(i * 7919) % 3321 + 1:05d}"
            nid = uuid.UUID(int=i).hex
            value = done
            if i % every == 0:
                request = template.model_copy(update={"notification_id": nid, "commune": commune})
                value = Entry(state="deferred", request=request).model_dump_json().encode()
            partition = partition_for(commune.encode(), PARTITIONS)
            pending.append(await producer.send(topic, value, nid.encode(), partition=partition))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def restore_today(topic: str) -> tuple[int, int, int]:
    """Today's restore: every partition into a set and a dict (the pre-ADR-0020 `Ledger.apply_record`); returns the
    entries and the RSS read while they are held."""
    done: set[str] = set()
    deferred: dict[str, NotificationRequest] = {}

    def apply(partition: int, record: object) -> None:
        key, value = record.key, record.value  # type: ignore[attr-defined]
        if key is None or value is None:
            return
        entry, nid = Entry.model_validate_json(value), key.decode()
        if entry.state == "done":
            done.add(nid)
            deferred.pop(nid, None)
        elif nid not in done and entry.request is not None:
            deferred[nid] = entry.request

    await read_to_end(CONNECTION, topic, range(PARTITIONS), apply, client_id="bench-ledger")
    return len(done), len(deferred), rss_bytes()


async def restore_new(topic: str, partitions: set[int]) -> tuple[int, int, int]:
    """The ledger feed holding `partitions`; returns the entries and the RSS read before the stores close."""
    stores = RocksStores()
    ledger = Ledger(topic, NoWrites(), layout=Layout(PARTITIONS, NoWrites(), stores, keep_ms=15 * 86_400_000))
    feed = LedgerFeed(CONNECTION, ledger, catch_up_s=120)
    await feed.open()
    tail = asyncio.create_task(feed.follow())
    try:
        await feed.hold("routine", partitions)
        return len(ledger.done), len(ledger.deferred), rss_bytes()
    finally:
        tail.cancel()
        await asyncio.gather(tail, return_exceptions=True)
        await feed.close()
        stores.close()


def child(design: str, topic: str) -> None:
    """One restore in this process: prints {seconds, rss, done, deferred} as JSON. RSS is read while the restored
    entries are held (read after they are freed and the stores closed, it came out low)."""
    before = rss_bytes()
    start = time.perf_counter()
    if design == "today":
        done, deferred, held = asyncio.run(restore_today(topic))
    else:
        done, deferred, held = asyncio.run(restore_new(topic, set(range(PARTITIONS)) if design == "new" else {0}))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss": held - before, "done": done, "deferred": deferred}))


def run_child(design: str, topic: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_ledger", design, topic], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={**os.environ}).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def release_tick() -> tuple[float, float]:
    """µs per deferred-release tick with TICK_DEFERRED requests due in 10 h: today's full scan, the due index."""
    request, now = sample_request("02269"), datetime.now(UTC)
    deferred = {uuid.UUID(int=i).hex: request for i in range(TICK_DEFERRED)}
    ticks = 20
    start = time.perf_counter()
    for _ in range(ticks):  # the loop of delivery.Dispatcher._release_deferred, without the enqueue
        for nid, r in list(deferred.items()):
            if nid == "" or r.commune == "":
                continue
            if r.not_before is None or r.not_before <= now:
                pass
    scan = (time.perf_counter() - start) / ticks * 1e6
    stores = RocksStores()
    ledger = Ledger("bench", NoWrites(), layout=Layout(PARTITIONS, NoWrites(), stores, keep_ms=86_400_000))
    ledger.hold(0)
    for nid in deferred:
        ledger.apply(nid, Entry(state="deferred", request=request.model_copy(update={"notification_id": nid})))
    start = time.perf_counter()
    for _ in range(ticks):
        list(ledger.due(now, lambda p: True))
    index = (time.perf_counter() - start) / ticks * 1e6
    stores.close()
    return scan, index


def main() -> None:
    names = Names(naming.namespace("ledger"))
    asyncio.run(ensure_topics(CONNECTION, [s for s in names.specs if s.name == names.ledger]))
    start = time.perf_counter()
    asyncio.run(fill(names.ledger))
    print(f"{ENTRIES:,} ledger entries written in {time.perf_counter() - start:.1f} s "
          f"({DEFERRED_SHARE:.0%} deferred); per million = measured x {1e6 / ENTRIES:.2f}")
    today, new, one = (run_child(d, names.ledger) for d in ("today", "new", "one-of-six"))
    scale = 1e6 / ENTRIES
    print(f"{'measure':52} {'today':>10} {'new':>10}   target")
    print(f"{'restore s per million entries (all 6 partitions)':52} {today['seconds'] * scale:10.1f} "
          f"{new['seconds'] * scale:10.1f}   <= 60")
    print(f"{'RSS growth MB per million entries (all 6 partitions)':52} {today['rss'] * scale / 1e6:10.0f} "
          f"{new['rss'] * scale / 1e6:10.0f}   <= 200")
    print(f"{'entries restored (done / deferred)':52} {today['done']:>5.0f}/{today['deferred']:<4.0f} "
          f"{new['done']:>5.0f}/{new['deferred']:<4.0f}")
    print(f"{'a worker owning 1 of 6 partitions: restore s, RSS MB':52} {today['seconds']:10.1f} "
          f"{one['seconds']:10.1f}   (measured, {one['done'] + one['deferred']:,.0f} entries)")
    print(f"{'':52} {today['rss'] / 1e6:10.0f} {one['rss'] / 1e6:10.0f}")
    scan, index = release_tick()
    print(f"{f'deferred-release tick, {TICK_DEFERRED:,} deferred none due (us)':52} {scan:10.0f} {index:10.0f}")
    print(f"ratios new/today: restore time x{new['seconds'] / today['seconds']:.2f}, RSS growth x"
          f"{new['rss'] / max(today['rss'], 1):.2f}, release tick x{index / max(scan, 1e-3):.4f}; a worker owning one "
          f"partition of six restores x{one['seconds'] / today['seconds']:.2f} of today's time")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        child(sys.argv[1], sys.argv[2])
    else:
        main()
