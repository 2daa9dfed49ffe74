"""A stranger who knows a signing source's id: a body under a wrong signature is never held in memory whole, and a
peer address past its allowance of failed signatures has its signed requests refused unread (in process)."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from services.gateway.auth import RequestLine, sign
from tests.gateway.asgi import API_KEY, HMAC_KEY, Body, Clock, Recording, app, call
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
NOW = 1_764_000_000
LINE = RequestLine(b"POST", b"/v1/events", b"")


def signed(body: bytes, key: bytes = HMAC_KEY) -> list[tuple[bytes, bytes]]:
    return [(b"x-source-id", b"province"), (b"x-signature", sign(key, LINE, NOW, body).encode()),
            (b"content-type", b"application/json")]


WRONG = [(b"x-source-id", b"province"), (b"x-signature", b"t=%d,v1=00" % NOW), (b"content-type", b"application/json")]


async def test_a_body_under_a_wrong_signature_never_sits_in_memory_whole() -> None:
    """10 MiB under a wrong signature: read and hashed as it streams (that cannot be avoided), refused before the
    spooled file is loaded; the peak stays near the 1 MiB held in memory (before: the 10 MiB were loaded)."""
    body = Body(size=64 * 1024, chunks=160)
    gateway = app(clock=Clock(NOW))
    tracemalloc.start()
    answer = await call(gateway, WRONG, body)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert answer.status == 401 and answer.json()["message"] == "the signature does not match the request"
    assert body.read == 160 and peak < 3 * 1024 * 1024, f"{peak / 2**20:.1f} MiB at the peak"


async def test_a_peer_past_its_failed_signatures_is_refused_unread() -> None:
    """After 3 failed signatures (GATEWAY_FAILED_SIGNATURES_BURST=3), that address's signed requests are 429 with
    Retry-After, their body unread, even a rightly signed one; another address, and the same address with an API
    key, are served; the allowance comes back with time."""
    clock, pub = Clock(NOW), Recording()
    gateway = app(pub, clock=clock, failed_signatures_burst=3, failed_signatures_per_s=0.1)
    for _ in range(3):
        assert (await call(gateway, WRONG, Body(chunks=2), client="203.0.113.9")).status == 401
    event = orjson.dumps(canonical_dossier("s-1"))
    for headers in (WRONG, signed(event)):
        body = Body(size=len(event), chunks=1, data=event)
        answer = await call(gateway, headers, body, client="203.0.113.9")
        assert answer.status == 429 and answer.headers["retry-after"] == "10" and body.read == 0
        assert answer.json()["error"] == "rate_limited"
    assert (await call(gateway, signed(event), event, client="198.51.100.4")).status == 202
    api_key = [(b"x-api-key", API_KEY.encode()), (b"content-type", b"application/json")]
    assert (await call(gateway, api_key, orjson.dumps(canonical_dossier("s-2")), client="203.0.113.9")).status == 202
    clock.now += 10
    again = orjson.dumps(canonical_dossier("s-3"))
    assert (await call(gateway, signed(again), again, client="203.0.113.9")).status == 202
    assert len(pub.sent) == 3


async def test_a_replayed_signature_spends_neither_the_sources_rate_nor_more_than_the_allowance() -> None:
    """An eavesdropper replays one overheard signed request from its own address, 20 times per 0.1 s for 10 s: each
    replay is refused; after the allowance of failed signatures its replays are refused unread (429); and the
    source's own fresh requests, one a second, all pass. Before: every replay was charged to the source's rate
    (1,406 of 2,000 answered 429 rate_limited) and the source's own requests were refused 429 from the second on."""
    clock = Clock(NOW)
    gateway = app(clock=clock, rate_burst=100, rate_per_s=50.0, failed_signatures_burst=10)
    event = orjson.dumps(canonical_dossier("replayed-1"))
    overheard = signed(event)
    assert (await call(gateway, overheard, event, client="198.51.100.10")).status == 202
    replays, own = [], []
    for tick in range(1, 101):
        clock.now = NOW + tick / 10
        for _ in range(20):
            replays.append((await call(gateway, overheard, event, client="203.0.113.66")).status)
        if tick % 10 == 5:
            fresh = orjson.dumps(canonical_dossier(f"fresh-{tick}"))
            line_time = int(clock.now)
            headers = [(b"x-source-id", b"province"), (b"x-signature", sign(HMAC_KEY, LINE, line_time, fresh).encode()),
                       (b"content-type", b"application/json")]
            own.append((await call(gateway, headers, fresh, client="198.51.100.10")).status)
    assert own == [202] * 10
    assert set(replays) == {401, 429} and replays.count(401) <= 10 + 2  # the allowance, and its slow refill
