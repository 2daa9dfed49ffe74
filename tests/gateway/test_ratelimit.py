"""Per-source rate limits: a token bucket per source, 429 with Retry-After past it (in process)."""

from __future__ import annotations

import orjson
import pytest

from services.gateway.app import create_app
from services.gateway.memory_claims import MemoryClaims
from services.gateway.ratelimit import RateLimiter
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import API_KEY, CREDENTIALS, REGISTRY, Clock, Recording, app, call
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit


def test_bucket_allows_the_burst_then_the_rate() -> None:
    """A burst of 3 at once, then one per 1/rate seconds; the wait is rounded up to whole seconds."""
    limiter = RateLimiter(rate_per_s=0.5, burst=3)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a", 0.0) == 2  # one token takes 2 s at 0.5/s
    assert limiter.take("a", 1.0) == 1
    assert limiter.take("a", 2.0) == 0
    assert limiter.take("b", 2.0) == 0  # another source has its own bucket


def test_a_clock_going_back_gives_no_tokens() -> None:
    """A clock stepping backwards neither refills nor breaks the bucket."""
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert limiter.take("a", 100.0) == 0
    assert limiter.take("a", 50.0) == 1
    assert limiter.take("a", 100.5) == 1
    assert limiter.take("a", 101.0) == 0


def test_a_table_of_unbounded_keys_stays_bounded_and_keeps_the_recent_ones() -> None:
    """Failed signatures from ever new addresses (IPv6 gives plenty) keep at most `max_keys` buckets, the least
    recently seen forgotten first: a busy address keeps its count, and each call stays cheap (the table used to
    be rebuilt on every failure past 10,000 addresses, forgetting only those idle for 100 s: it grew without
    bound)."""
    limiter = RateLimiter(rate_per_s=0.001, burst=2, max_keys=100)
    for i in range(20_000):
        limiter.take(f"2001:db8::{i:x}", float(i) / 1000)
        if i % 50 == 0:
            limiter.take("busy", float(i) / 1000)
    assert len(limiter) == 100
    assert limiter.wait("busy", 20.0) > 0, "the address seen all along is still limited"


async def test_over_the_rate_is_429_with_retry_after_and_nothing_published() -> None:
    """Past the burst a source gets 429 + Retry-After before its body is read; after the wait it is served again."""
    pub, clock = Recording(), Clock()
    gateway = app(pub, clock, rate_per_s=1.0, rate_burst=2)
    body = orjson.dumps(canonical_dossier("r-1"))
    headers = [(b"x-api-key", API_KEY.encode())]
    assert [(await call(gateway, headers, body)).status for _ in range(2)] == [202, 202]
    limited = await call(gateway, headers, body)
    assert limited.status == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"] == "rate_limited" and len(pub.sent) == 2
    clock.now += 1
    assert (await call(gateway, headers, body)).status == 202


async def test_a_wall_clock_stepped_back_does_not_stop_the_rates() -> None:
    """Rates are measured by the monotonic clock, not wall time: the wall clock stepped back 600 s (NTP, a VM
    resumed) while a source sends a tenth of its rate, and every request is still served (audit: 5,901 of 6,000
    refused 429 until the wall clock caught up)."""
    pub, wall, ticks = Recording(), Clock(), Clock(50.0)
    gateway = create_app(GatewaySettings(rate_per_s=10.0, rate_burst=2), REGISTRY, CREDENTIALS, pub, clock=wall,
                         ticks=ticks, claims=MemoryClaims(wall))
    body = orjson.dumps(canonical_dossier("r-1"))
    headers = [(b"x-api-key", API_KEY.encode())]
    statuses = []
    for i in range(40):
        if i == 5:
            wall.now -= 600
        wall.now += 1.0
        ticks.now += 1.0
        statuses.append((await call(gateway, headers, body)).status)
    assert statuses == [202] * 40
