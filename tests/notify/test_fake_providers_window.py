"""The fake providers as the demo runs them hold a bounded window of deliveries however long they run, and still answer
a key repeated within it as a replay; built for a test they keep every delivery, for exact accounting."""

from __future__ import annotations

import gc
import tracemalloc
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.notify.fake_providers import FakeProviders, demo_providers

pytestmark = pytest.mark.unit
WINDOW = 1_000
DELIVERIES = 50_000
"""Some 17 minutes of the demo's traffic; the demo's own window is larger, so the test narrows it."""


def key(n: int) -> str:
    return f"{n:032x}"


def event(n: int) -> dict[str, Any]:
    """A webhook body as the provider parses it, about 1.5 KB of JSON, a new one for every request as in a real run."""
    note = f"D-{n}: " + "Hồ sơ đã được tiếp nhận. " * 50
    data = {"dossier_code": f"D-{n}", "commune": "02269", "note": note}
    return {"event": {"id": f"evt-{n}", "type": "vn.communebus.dossier.status-changed.v1",
                      "time": "2025-11-04T02:30:00Z", "data": data}}


async def deliver(fake: FakeProviders, numbers: range) -> None:
    """Each number's delivery through the handlers' shared step, as its HTTP request would reach it. The connection
    is a plain namespace: aiohttp's mocked one costs milliseconds a request, minutes for 50,000."""
    connection = SimpleNamespace(ssl_context=None, peername=None, sockname=None)
    base = make_mocked_request("POST", "/hooks/prov-08", protocol=connection)
    for n in numbers:
        await fake._accept(base.clone(headers={"Idempotency-Key": key(n)}), event(n), {"ok": True})


def held() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_the_demos_providers_hold_no_more_after_50000_deliveries_than_after_two_windows() -> None:
    """Past its window, what the demo's process keeps stops growing: the same entries and bytes after 50,000
    deliveries as after 2,000, while its counts still name every delivery."""
    fake = demo_providers(port=0, window=WINDOW)
    tracemalloc.start()
    try:
        await deliver(fake, range(2 * WINDOW))
        after_two_windows = held()
        await deliver(fake, range(2 * WINDOW, DELIVERIES))
        grown = held() - after_two_windows
    finally:
        tracemalloc.stop()
    kept = (len(fake.accepted), len(fake.successes), len(fake.arrivals))
    assert kept == (WINDOW, WINDOW, WINDOW), kept
    assert grown < 64 * 1024, f"{grown:,} bytes more for {DELIVERIES - 2 * WINDOW:,} more deliveries"
    assert fake.delivered == fake.requests == DELIVERIES and fake.replayed == 0


async def test_a_repeat_within_the_demos_window_is_a_replay_and_stats_count_every_delivery() -> None:
    """Over HTTP: a key delivered within the last `window` deliveries gets its first answer back, marked a duplicate,
    and counts as a replay; /stats counts every first delivery, not only the ones still kept."""
    fake = demo_providers(port=0, window=WINDOW)
    await deliver(fake, range(3 * WINDOW))
    await fake.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{fake.url}/sms", json={"to": "0912345678", "text": "again"},
                                 headers={"Idempotency-Key": key(3 * WINDOW - WINDOW // 2)}) as resp:
                assert resp.status == 200 and (await resp.json())["duplicate"] is True
            async with http.get(f"{fake.url}/stats") as resp:
                stats = await resp.json()
    finally:
        await fake.stop()
    assert stats == {"accepted": 3 * WINDOW, "replays": 1, "rejected": 0, "requests": 3 * WINDOW + 1, "kept": WINDOW,
                     "window": WINDOW}
    assert fake.replays[key(3 * WINDOW - WINDOW // 2)] == 1 and sum(fake.successes.values()) == WINDOW


async def test_providers_built_for_a_test_keep_every_delivery_whole() -> None:
    """Unbounded by default (tests/notify, tests/chaos count each key's requests to the end of their run): the first
    delivery keeps its body and is still answered as a replay after many more."""
    fake = FakeProviders()
    await deliver(fake, range(3 * WINDOW))
    request: web.Request = make_mocked_request("POST", "/hooks/prov-08", headers={"Idempotency-Key": key(0)})
    reply = await fake._accept(request, event(0), {"ok": True})
    assert reply.status == 200 and fake.replays[key(0)] == 1 and fake.successes[key(0)] == 1
    assert len(fake.accepted) == len(fake.arrivals) - 1 == 3 * WINDOW
    assert fake.accepted[key(0)].body == event(0)
