"""Local fake providers for tests, the benchmark and the demo: SMS gateway, Zalo ZNS and a webhook receiver.

They behave like real idempotent APIs: a repeated Idempotency-Key gets the first
answer back and is counted as a replay, never as a second success. Faults can
be injected: an outage (503) for N seconds, every n-th request failing with 500,
slow responses. `python -m services.notify.fake_providers --port 8025` runs them as the demo does: counts, and the
keys of the last `--window` deliveries only, so a demo left running for days holds no more than one that has run
for twenty minutes. Built in a test, they keep everything, bodies and per-key counts, for exact accounting.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from services.notify.subscribers import verify

log = structlog.get_logger("notify.fake_providers")
DEMO_WINDOW = 50_000
"""Deliveries the demo's providers remember: about 17 minutes at the demo's ~50 messages a second, far longer than
notify's longest wait between two attempts of one message (retry_cap_s, 60 s), so every repeat notify can send
in that time is still caught as a replay. They hold about 27 MB at most (tracemalloc, 120,000 deliveries)."""


@dataclass(slots=True)
class Received:
    key: str
    path: str
    body: dict[str, Any]
    at: float


@dataclass
class Faults:
    outage_until: float = 0.0
    fail_every: int = 0
    delay_s: float = 0.0


@dataclass
class FakeProviders:
    host: str = "127.0.0.1"
    port: int = 0
    webhook_secrets: dict[str, str] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    window: int | None = None
    """None: keep every delivery whole, as tests and the chaos harness need (they read bodies, and count the requests
    of each key to the end of their run). A number: keep the last `window` deliveries without their bodies, which
    only code in this process could read, so memory stays bounded; a key repeated after its delivery left the window
    counts as a new delivery."""
    accepted: OrderedDict[str, Received] = field(default_factory=OrderedDict)
    """First deliveries by Idempotency-Key, oldest first (the last `window` of them when bounded)."""
    successes: Counter[str] = field(default_factory=Counter)
    replays: Counter[str] = field(default_factory=Counter)
    """Repeats of each key in `accepted`, answered with its first answer."""
    arrivals: deque[tuple[str, float]] = field(init=False)
    """(Idempotency-Key, epoch seconds) of every request answered with success, first or repeated (the last
    `window` of them when bounded)."""
    delivered: int = 0
    """First deliveries since the start, whether still in the window or not."""
    replayed: int = 0
    """Repeats answered as replays since the start."""
    rejected: int = 0
    rejected_keys: Counter[str] = field(default_factory=Counter)
    """Requests answered with a failure (503 in an outage, 500), by Idempotency-Key. Kept whole even when bounded:
    only code in this process can inject a fault, and the demo's process injects none."""
    requests: int = 0
    bad_signatures: int = 0

    def __post_init__(self) -> None:
        self.arrivals = deque(maxlen=self.window)

    def outage(self, seconds: float) -> None:
        self.faults.outage_until = time.monotonic() + seconds

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def texts(self, path: str = "/sms") -> list[str]:
        return [r.body.get("text", "") for r in self.accepted.values() if r.path == path]

    async def _accept(self, request: web.Request, body: dict[str, Any], reply: dict[str, Any]) -> web.Response:
        self.requests += 1
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        key = request.headers.get("Idempotency-Key", "")
        if time.monotonic() < self.faults.outage_until:
            self.rejected += 1
            self.rejected_keys[key] += 1
            return web.json_response({"error": "unavailable"}, status=503)
        if self.faults.fail_every and self.requests % self.faults.fail_every == 0:
            self.rejected += 1
            self.rejected_keys[key] += 1
            return web.json_response({"error": "internal"}, status=500)
        self.arrivals.append((key, time.time()))
        if self._record_success(key, request.path, body):
            return web.json_response({**reply, "duplicate": True})
        return web.json_response(reply)

    def _record_success(self, key: str, path: str, body: dict[str, Any]) -> bool:
        """Record a request answered with success; True when it repeats a delivery still remembered (a replay)."""
        if key in self.accepted:
            self.replays[key] += 1
            self.replayed += 1
            return True
        self.accepted[key] = Received(key, path, body if self.window is None else {}, time.time())
        self.successes[key] += 1
        self.delivered += 1
        if self.window is not None and len(self.accepted) > self.window:
            oldest, _ = self.accepted.popitem(last=False)
            del self.successes[oldest]
            self.replays.pop(oldest, None)
        return False

    async def sms(self, request: web.Request) -> web.Response:
        body = await request.json()
        reply = {"message_id": "sms-" + request.headers.get("Idempotency-Key", "")[:12]}
        return await self._accept(request, body, reply)

    async def zns(self, request: web.Request) -> web.Response:
        body = await request.json()
        reply = {"error": 0, "data": {"msg_id": "zns-" + str(body.get("tracking_id"))[:12]}}
        return await self._accept(request, body, reply)

    async def hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        secret = self.webhook_secrets.get(request.match_info["name"])
        h = request.headers
        if secret is not None and not verify(secret, h.get("Webhook-Id", ""), h.get("Webhook-Timestamp", ""), raw,
                                             h.get("Webhook-Signature", "")):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        import orjson

        return await self._accept(request, {"event": orjson.loads(raw)}, {"ok": True})

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"accepted": self.delivered, "replays": self.replayed, "rejected": self.rejected,
                                  "requests": self.requests, "kept": len(self.accepted), "window": self.window})

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/sms", self.sms), web.post("/zns/send", self.zns),
                        web.post("/hooks/{name}", self.hook), web.get("/stats", self.stats)])
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self._runner.cleanup()


class _MailCounter:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 OK"


def demo_providers(port: int, window: int = DEMO_WINDOW) -> FakeProviders:
    """The providers as `make demo` runs them, for as long as it runs: counts and the last `window` deliveries."""
    return FakeProviders(port=port, window=window)


async def _serve(port: int, smtp_port: int, window: int) -> None:
    fake = demo_providers(port, window)
    await fake.start()
    log.info("fake_providers.listening", url=fake.url, routes="POST /sms, /zns/send, /hooks/<name>; GET /stats")
    try:  # a local SMTP sink too, when the dev extra (aiosmtpd) is installed
        from aiosmtpd.controller import Controller

        Controller(_MailCounter(), hostname="127.0.0.1", port=smtp_port).start()
        log.info("fake_providers.smtp_listening", host="127.0.0.1", port=smtp_port)
    except ImportError:
        pass
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--smtp-port", type=int, default=8026)
    parser.add_argument("--window", type=int, default=DEMO_WINDOW,
                        help="deliveries remembered to answer a repeated Idempotency-Key as a replay")
    args = parser.parse_args()
    if args.window < 1:
        parser.error("--window must be at least 1")
    asyncio.run(_serve(args.port, args.smtp_port, args.window))


if __name__ == "__main__":
    main()
