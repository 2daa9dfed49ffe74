"""Gateway throughput and latency on the local broker: HTTP request -> validated -> transaction acked (202).

Side by side in one run: one event per request (sequential, and 8 concurrent clients, which share the
gateway's one transactional producer), then batches of 100 and 1000 events per request; one event per
request with an Idempotency-Key, and HMAC-signed (each costs a claim on commune.gateway.claims, ADR 0013).
Also the pure validation cost per event (`check`), to show where time goes. The rate limit is lifted: this
measures the gateway, not its limiter.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

from bench import naming
from schemas.topics import GATEWAY_CLAIMS, RAW, scoped
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.gateway.auth import RequestLine, sign
from services.gateway.batch import check
from services.sources.registry import load_registry

KAFKA = KafkaConnection()
KEY = "bench-" + uuid.uuid4().hex
HMAC_KEY = "bench-hmac-" + uuid.uuid4().hex
ROOT = Path(__file__).resolve().parent.parent


def event(i: int) -> dict:
    return {"specversion": "1.0", "id": f"bench-{uuid.uuid4().hex}", "source": "/communes/02269/one-stop",
            "type": "vn.communebus.dossier.status-changed.v1", "time": "2025-11-01T08:05:00", "subject": f"B-{i}",
            "commune": "02269", "province": "08",
            "data": {"dossier_code": f"B-{i}", "procedure_code": "1.001234", "channel": "counter", "status": 2,
                     "submitted_at": "2025-11-01T08:00:00", "received_at": "2025-11-01T08:05:00",
                     "due_at": "2025-11-05T17:00:00"}}


def headers_for(mode: str, body: bytes) -> dict[str, str]:
    """plain: the API key; key: with an Idempotency-Key; signed: HMAC over the request (with a key too)."""
    headers = {"Content-Type": "application/json"}
    if mode == "plain":
        return {**headers, "X-Api-Key": KEY}
    key = str(uuid.uuid4())
    if mode == "key":
        return {**headers, "X-Api-Key": KEY, "Idempotency-Key": key}
    line = RequestLine(b"POST", b"/v1/events", b"", b"", key.encode())
    return {**headers, "Idempotency-Key": key, "X-Source-Id": "thuong-lam-one-stop",
            "X-Signature": sign(HMAC_KEY.encode(), line, int(time.time()), body)}


async def run(url: str, per_request: int, requests: int, clients: int,
              mode: str = "plain") -> tuple[float, list[float]]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        async def client(n: int) -> None:
            for r in range(n):
                body = orjson.dumps([event(r * per_request + i) for i in range(per_request)])
                t0 = time.perf_counter()
                resp = await http.post("/v1/events", content=body, headers=headers_for(mode, body))
                latencies.append(time.perf_counter() - t0)
                assert resp.status_code == 202, resp.text
        start = time.perf_counter()
        await asyncio.gather(*(client(requests // clients) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return per_request * len(latencies) / elapsed, latencies


def validation_us() -> float:
    """µs per event of `check` as the gateway calls it: with the caller's registry entry (without one, no registry
    rule runs); the best of 3 passes over 1,000 events (the first pays for the warm-up)."""
    caller = load_registry(ROOT / "infra/sources.yaml").by_id["thuong-lam-one-stop"]
    records = [orjson.dumps(event(i)) for i in range(1000)]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        checked = check(records, caller=caller)
        best = min(best, time.perf_counter() - t0)
        assert not checked.rejected, checked.errors[:3]  # every rule ran to the end: none refused
    return best / len(records) * 1e6


def main() -> None:
    ns = naming.namespace("gw")
    asyncio.run(ensure_topics(KAFKA, [scoped(t, ns) for t in (*RAW.values(), GATEWAY_CLAIMS)]))
    tmp = Path(tempfile.mkdtemp())
    (tmp / "secrets.yaml").write_text(f"thuong-lam-one-stop: {{api_key: {KEY}, hmac_key: {HMAC_KEY}}}\n")
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "KAFKA_BOOTSTRAP": KAFKA.bootstrap, "GATEWAY_NAMESPACE": ns, "GATEWAY_PORT": str(port),
           "GATEWAY_SECRETS_FILE": str(tmp / "secrets.yaml"), "GATEWAY_LOG_LEVEL": "WARNING",
           "GATEWAY_INSTANCE_ID": f"bench-{port}", "GATEWAY_RATE_PER_S": "1000000", "GATEWAY_RATE_BURST": "1000000"}
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # ready: producer started, claims read
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        asyncio.run(run(url, 1, 20, 1))  # warm-up: producer start, metadata
        per_event_us = validation_us()
        print(f"{'case':<34}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
        for label, per, n, clients, mode in (("1 event/request, 1 client", 1, 300, 1, "plain"),
                                             ("1 event/request, 8 clients", 1, 400, 8, "plain"),
                                             ("100 events/request, 1 client", 100, 30, 1, "plain"),
                                             ("1000 events/request, 1 client", 1000, 6, 1, "plain"),
                                             ("1/request + Idempotency-Key", 1, 300, 1, "key"),
                                             ("1/request, HMAC-signed + key", 1, 300, 1, "signed")):
            rate, lat = asyncio.run(run(url, per, n, clients, mode))
            lat.sort()
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(f"{label:<34}{rate:>10.0f}{statistics.median(lat) * 1000:>9.1f}{p99 * 1000:>9.1f}")
        print(f"pure validation (normalise + registry): {per_event_us:.0f} µs/event")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
