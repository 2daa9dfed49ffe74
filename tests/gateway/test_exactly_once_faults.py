"""Exactly once through two gateway instances under process faults, counted the Jepsen way (real broker).

A client streams batches, each with an Idempotency-Key of its own, to either instance, and retries a failed attempt
(a reset or refused connection, a timeout, 409, 429, 5xx) with the same request on the other instance, as
docs/integrators.md tells integrators, until its answer comes; meanwhile one instance is SIGKILLed and restarted, the
other SIGSTOPped past its keys' lease and the producer's transaction timeout, then SIGCONTed. Afterwards the raw
topic, read_committed, is counted per event (source, id): every acknowledged event once, no more.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from schemas.events import Family
from schemas.topics import RAW, scoped
from services.gateway.settings import GatewaySettings
from tests.gateway.conftest import API_KEY, Gateway, Site, wait_ready
from tests.kafkatools import free_port, read_all
from tests.samples import canonical_dossier
from tests.waiting import eventually, eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(180)]

KAFKA_TIMEOUT_S = 1.0
HELD_S = GatewaySettings(kafka_timeout_s=KAFKA_TIMEOUT_S).key_held_s()
"""The longest a request may hold its key waiting on Kafka (11 s): the lease must be above it."""
LEASE_S = HELD_S + 1
SETTINGS = {"GATEWAY_KAFKA_TIMEOUT_S": str(KAFKA_TIMEOUT_S), "GATEWAY_CLAIM_LEASE_S": str(LEASE_S),
            "GATEWAY_TRANSACTION_TIMEOUT_MS": str(int((LEASE_S - 2) * 1000)), "GATEWAY_RETRY_AFTER_S": "1",
            "GATEWAY_RATE_PER_S": "10000", "GATEWAY_RATE_BURST": "10000"}
"""The shortest lease the settings accept, and a transaction timeout below it, as the defaults are (90 s, 20 s)."""
PAUSE_S = LEASE_S + 2
"""Past the lease (a retry elsewhere may take the key) and the transaction timeout (the broker aborts what was open)."""
BATCHES, PER_BATCH, CLIENTS = 100, 3, 8
ATTEMPT_TIMEOUT_S = 3.0
RETRIED = {409, 429, 500, 502, 503, 504}


@dataclass
class Batch:
    key: str
    ids: list[str]
    body: bytes


@dataclass
class Ledger:
    """What the client saw: each key's final answer, every attempt's outcome."""

    final: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    """Attempts sent to each instance and not answered yet."""
    attempts: int = 0
    retries: int = 0

    @property
    def acknowledged(self) -> int:
        return sum(1 for status, _ in self.final.values() if status == 202)


def batches(run: str) -> list[Batch]:
    made = []
    for n in range(BATCHES):
        events = [canonical_dossier(f"eo-{run}-{n}-{i}") for i in range(PER_BATCH)]
        made.append(Batch(str(uuid.uuid4()), [e["id"] for e in events], orjson.dumps(events)))
    return made


async def deliver(http: httpx.AsyncClient, urls: dict[str, str], batch: Batch, ledger: Ledger,
                  pick: random.Random) -> None:
    """Send `batch` to a random instance, then to the other after each failure, until a final answer."""
    target = pick.choice(sorted(urls))
    headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json", "Idempotency-Key": batch.key}
    while True:
        ledger.attempts += 1
        ledger.in_flight[target] += 1
        try:
            answer: httpx.Response | None = await http.post(urls[target] + "/v1/events", content=batch.body,
                                                            headers=headers, timeout=ATTEMPT_TIMEOUT_S)
        except httpx.HTTPError as exc:  # reset, refused, timed out
            answer = None
            ledger.outcomes[type(exc).__name__] += 1
        finally:
            ledger.in_flight[target] -= 1
        wait = 0.1
        if answer is not None:
            ledger.outcomes[str(answer.status_code)] += 1
            if answer.status_code not in RETRIED:
                ledger.final[batch.key] = (answer.status_code, answer.json())
                return
            wait = min(float(answer.headers.get("Retry-After", "1")), 1.0)
        ledger.retries += 1
        target = next(name for name in urls if name != target)
        await asyncio.sleep(wait * pick.uniform(0.5, 1.0))


async def stream(urls: dict[str, str], todo: list[Batch], ledger: Ledger, pick: random.Random) -> None:
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    for batch in todo:
        queue.put_nowait(batch)

    async def client() -> None:
        while not queue.empty():
            await deliver(http, urls, queue.get_nowait(), ledger, pick)

    async with httpx.AsyncClient() as http, asyncio.TaskGroup() as clients:
        for _ in range(CLIENTS):
            clients.create_task(client())


@dataclass
class Faults:
    """SIGSTOP g2 with requests of the client under way there; while it is paused, SIGKILL g1 once a quarter of the
    batches are answered and restart it; SIGCONT g2 PAUSE_S after its SIGSTOP."""

    site: Site
    gateways: dict[str, Gateway]
    ports: dict[str, tuple[str, str]]
    resumed: float = 0.0

    def restart(self, name: str) -> Gateway:
        port, metrics = self.ports[name]
        self.gateways[name] = self.site.start(name, ready=False, GATEWAY_PORT=port, GATEWAY_HTTP_PORT=metrics,
                                              **SETTINGS)
        return self.gateways[name]

    async def run(self, ledger: Ledger) -> None:
        await eventually_async(lambda: ledger.acknowledged >= BATCHES // 10 and ledger.in_flight["g2"] >= 3,
                               timeout=60, what="requests under way on g2")
        paused = self.gateways["g2"].proc
        paused.send_signal(signal.SIGSTOP)
        try:
            resume_at = time.monotonic() + PAUSE_S
            await eventually_async(lambda: ledger.acknowledged >= BATCHES // 4, timeout=60, what="a quarter answered")
            killed = self.gateways["g1"].proc
            killed.send_signal(signal.SIGKILL)
            await asyncio.to_thread(killed.wait, 30)
            await asyncio.to_thread(wait_ready, self.restart("g1"))
            await asyncio.sleep(resume_at - time.monotonic())  # the fault itself: a pause of this length
        finally:
            paused.send_signal(signal.SIGCONT)
            self.resumed = time.monotonic()


def replayed(gateway: Gateway, batch: Batch) -> tuple[int, dict[str, Any], str | None]:
    """`batch` sent to `gateway` until its final answer (a 503 while it reconnects after its pause is retried)."""

    def final() -> tuple[int, dict[str, Any], str | None]:
        answer = httpx.post(gateway.url + "/v1/events", content=batch.body, timeout=30, headers={
            "X-Api-Key": API_KEY, "Content-Type": "application/json", "Idempotency-Key": batch.key})
        assert answer.status_code not in RETRIED, answer.text
        return answer.status_code, answer.json(), answer.headers.get("idempotent-replayed")

    return eventually(final, timeout=30, interval=0.5, what=f"a final answer from {gateway.url}")


def test_every_acknowledged_event_is_published_once_through_kills_and_pauses(site: Site) -> None:
    """Under a SIGKILL and restart of one instance and a SIGSTOP of the other past its leases, with every failed
    attempt retried on the other instance with the same key: every key ends in one 202, the same again on each
    instance afterwards, and the raw topic holds each acknowledged event exactly once (0 lost, 0 duplicated)."""
    began, seed = time.monotonic(), random.randrange(2**32)
    pick, run = random.Random(seed), uuid.uuid4().hex[:8]
    ports = {name: (str(free_port()), str(free_port())) for name in ("g1", "g2")}
    faults = Faults(site, {}, ports)
    for name in ports:
        faults.restart(name)
    for gateway in faults.gateways.values():
        wait_ready(gateway)
    urls = {name: gateway.url for name, gateway in faults.gateways.items()}
    todo, ledger = batches(run), Ledger()

    async def scenario() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(stream(urls, todo, ledger, pick))
            group.create_task(faults.run(ledger))

    asyncio.run(scenario())
    g2_exited = faults.gateways["g2"].proc.poll()
    # quiescence: a request resumed with g2 ends within what it may wait on Kafka (HELD_S); then each instance's
    # marker, once readable, follows every transaction that instance committed before it
    time.sleep(max(0.0, faults.resumed + HELD_S - time.monotonic()))
    for name, gateway in faults.gateways.items():
        if gateway.proc.poll() is not None:
            wait_ready(faults.restart(name))
    markers = [Batch(str(uuid.uuid4()), [f"eo-{run}-marker-{name}"], orjson.dumps(canonical_dossier(
        f"eo-{run}-marker-{name}"))) for name in faults.gateways]
    for marker, gateway in zip(markers, faults.gateways.values(), strict=True):
        assert replayed(gateway, marker)[0] == 202
    topic = scoped(RAW[Family.DOSSIER], site.namespace).name
    records = asyncio.run(read_all(site.bootstrap, topic, expect=BATCHES * PER_BATCH + len(markers), idle=1.0))
    seen = Counter((header(r.headers, "ce_source"), header(r.headers, "ce_id")) for r in records)
    source = "/communes/02269/one-stop"
    sent = [(source, i) for batch in todo for i in batch.ids]
    acknowledged = [(source, i) for b in todo if ledger.final.get(b.key, (0, {}))[0] == 202 for i in b.ids]
    lost = [e for e in acknowledged if seen[e] == 0]
    duplicated = {e: n for e, n in seen.items() if n > 1}
    lapsed = sum(log.read_text().count('"gateway.lease_lapsed"') for log in {g.log for g in site.running})
    print(f"\nexactly-once (seed {seed}): sent {len(sent)} events in {BATCHES} requests, acknowledged "
          f"{len(acknowledged)}, lost {len(lost)}, duplicated {len(duplicated)} (extra copies "
          f"{sum(n - 1 for n in duplicated.values())}); attempts {ledger.attempts}, retries {ledger.retries} "
          f"{dict(ledger.outcomes)}; transactions aborted past a lease {lapsed}; g2 exited after its pause: "
          f"{g2_exited}; {time.monotonic() - began:.1f} s")

    unanswered = [b.key for b in todo if ledger.final.get(b.key, (0, {}))[0] != 202]
    assert not unanswered, [ledger.final.get(k) for k in unanswered]
    assert not lost and not duplicated, (lost[:10], list(duplicated.items())[:10])
    assert not set(seen) - set(sent) - {(source, m.ids[0]) for m in markers}, "events nobody sent"
    for batch in todo:
        _, first = ledger.final[batch.key]
        assert first["ids"] == batch.ids and first["accepted"] == PER_BATCH, first
        for gateway in faults.gateways.values():
            assert replayed(gateway, batch) == (202, first, "true"), batch.key


def header(headers: Any, name: str) -> str | None:
    return next((v.decode() for k, v in headers if k == name), None)
