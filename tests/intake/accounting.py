"""Jepsen-style accounting of intake on the real broker: every raw record sent ends canonical or dead-lettered,
exactly once, and each dossier's events keep their order.

`Stream` builds unique records (dossiers of several events keyed by commune, single-event dossiers sent without a
key, malformed records with and without a key), `feed` sends them at a steady rate with one producer, and `audit`
reads the canonical, dead-letter and raw topics `read_committed` and counts what was lost, duplicated or reordered.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from schemas import wire
from schemas.admin import communes_of
from schemas.deadletter import DeadLetterContext
from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, RAW
from services.common import clients
from services.common.settings import KafkaConnection
from services.intake.outputs import REROUTED_FROM
from tests.kafkatools import opened_letters, read_all
from tests.samples import canonical_dossier, dumps

COMMUNES = communes_of("08")[:40]
EVENTS_PER_DOSSIER = 3


@dataclass(frozen=True)
class Sent:
    key: bytes | None
    value: bytes
    event_id: str | None
    """None: malformed, must be dead-lettered."""


def stream(n: int, start: int = 0) -> list[Sent]:
    """`n` unique raw dossier records: per 10, 6 events of keyed dossiers (3 each, in order), 2 unkeyed single-event
    dossiers (intake re-routes them), 1 malformed keyed and 1 malformed unkeyed record."""
    out = []
    for i in range(start, start + n):
        slot = i % 10
        commune = COMMUNES[(i // 10) % len(COMMUNES)]
        if slot in (7, 9):
            out.append(Sent(commune.encode() if slot == 7 else None, b'{"broken": ' + str(i).encode(), None))
            continue
        if slot in (3, 8):
            code, key = f"U-{i}", None
        else:
            code, key = f"D-{i // 10}-{slot // EVENTS_PER_DOSSIER}", commune.encode()
        event = {**canonical_dossier(f"evt-{i}"), "commune": commune, "subject": code}
        event["data"] = {**event["data"], "dossier_code": code}
        out.append(Sent(key, dumps(event), f"evt-{i}"))
    return out


async def feed(bootstrap: str, topic: str, records: list[Sent], per_second: int,
               until: asyncio.Event | None = None) -> int:
    """Send `records` in order at about `per_second` with one idempotent producer (acks=all), every 50 ms a slice;
    with `until`, stop early once it is set. Returns how many were sent (acknowledged): `records[:n]`."""
    producer = clients.producer(KafkaConnection(bootstrap=bootstrap), client_id="tests-feed", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        chunk, began = max(1, per_second // 20), time.monotonic()
        for n, i in enumerate(range(0, len(records), chunk)):
            if until is not None and until.is_set():
                break
            futures = [await producer.send(topic, r.value, key=r.key) for r in records[i:i + chunk]]
            await asyncio.gather(*futures)
            sent += len(futures)
            await asyncio.sleep(max(0.0, began + (n + 1) * 0.05 - time.monotonic()))
    finally:
        await producer.stop()
    return sent


def _scrape(port: int) -> list[str] | None:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode().splitlines()
    except OSError:
        return None


def metric(port: int, name: str) -> float | None:
    """The value of an unlabelled sample of a worker's /metrics (None while it does not answer or lacks it)."""
    for line in _scrape(port) or ():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def metric_total(port: int, name: str) -> float | None:
    """The sum of a labelled metric's samples on a worker's /metrics (None while it does not answer)."""
    lines = _scrape(port)
    return None if lines is None else sum(float(line.split()[-1]) for line in lines if line.startswith(name + "{"))


@dataclass
class Audit:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    rerouted: int = 0

    def assert_exactly_once(self) -> None:
        assert not self.lost, f"lost {len(self.lost)}: {self.lost[:5]}"
        assert not self.duplicated, f"duplicated {len(self.duplicated)}: {self.duplicated[:5]}"
        assert not self.out_of_order, f"out of order {len(self.out_of_order)}: {self.out_of_order[:5]}"


async def audit(bootstrap: str, topics: dict[str, str], sent: list[Sent], timeout: float = 120) -> Audit:  # noqa: ASYNC109
    """Read canonical, dead letters and raw `read_committed` and compare with `sent`."""
    valid = [s.event_id for s in sent if s.event_id]
    malformed = Counter(s.value for s in sent if s.event_id is None)
    canonical = await read_all(bootstrap, topics[CANONICAL[Family.DOSSIER].name], expect=len(valid), timeout=timeout)
    dlq_name = topics[DLQ_INTAKE.name]
    sealed = await read_all(bootstrap, dlq_name, expect=sum(malformed.values()), timeout=timeout / 2)
    dlq = await opened_letters(bootstrap, dlq_name.removesuffix(DLQ_INTAKE.name).removesuffix("."), sealed)
    raw = await read_all(bootstrap, topics[RAW[Family.DOSSIER].name], expect=len(sent), timeout=timeout / 2)
    result = Audit()

    published = Counter(wire.decode(r.headers, r.value).id for r in canonical)
    result.lost += [i for i in valid if i not in published]
    result.duplicated += [i for i, n in published.items() if n > 1]
    dead = Counter(r.value for r in dlq)
    result.lost += [v.decode() for v in malformed if v not in dead]
    result.duplicated += [f"{v.decode()} x{n}" for v, n in dead.items() if n > 1 and v in malformed]
    result.duplicated += [f"{DeadLetterContext.from_headers(r.headers).reason.value} of {r.value[:40]!r}"
                          for r in dlq if r.value not in malformed]
    origins = Counter(dict(r.headers)[REROUTED_FROM] for r in raw if REROUTED_FROM in dict(r.headers))
    result.duplicated += [f"re-routed twice: {o!r}" for o, n in origins.items() if n > 1]
    result.rerouted = len(origins)

    order: dict[str, list[int]] = defaultdict(list)
    for rec in sorted(canonical, key=lambda r: (r.partition, r.offset)):
        event = wire.decode(rec.headers, rec.value)
        order[event.subject].append(int(event.id.removeprefix("evt-")))
    result.out_of_order += [subject for subject, seq in order.items() if seq != sorted(seq)]
    return result
