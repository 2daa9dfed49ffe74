"""A signing source holds no more signature nonces than its rate lets it make within their window (in process, with
claims that take time, as Kafka's do)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from fastapi import FastAPI

from services.gateway.app import create_app
from services.gateway.auth import RequestLine, sign
from services.gateway.claims import Verdict
from services.gateway.memory_claims import MemoryClaims
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import CREDENTIALS, HMAC_KEY, REGISTRY, Clock, Recording, call
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
LINE = RequestLine(b"POST", b"/v1/events", b"")
AT_ONCE = 20


class SlowClaims(MemoryClaims):
    """`MemoryClaims` whose claim waits a turn of the loop first, as a claim on the Kafka topic waits for its record
    to come back: the requests that arrive meanwhile see the table (and the source's tokens) as they were."""

    async def claim(self, key: str, fingerprint: str, lease_s: float) -> Verdict:
        await asyncio.sleep(0)
        return await super().claim(key, fingerprint, lease_s)


async def one(gateway: FastAPI, clock: Clock, n: int) -> int:
    """A new event, signed now by the source "province": the answer's status."""
    body = orjson.dumps(canonical_dossier(f"n-{n}"))
    headers = [(b"x-source-id", b"province"), (b"x-signature", sign(HMAC_KEY, LINE, int(clock.now), body).encode()),
               (b"content-type", b"application/json")]
    return (await call(gateway, headers, body)).status


async def test_concurrent_signed_requests_cannot_pile_up_nonces_past_the_rate() -> None:
    """A source with its secret sends 20 signed requests at once, every second for 30 s, at a rate of 1 a second
    (burst 1), its nonces held 120 s (2 x GATEWAY_SIGNATURE_TOLERANCE_S): the nonces it holds stay within what its rate
    makes while they are held and until the next prune of the expired (1 + 150), besides one round already claiming.
    Before: every request that passed the rate's check while the first one's claim was on its way held a nonce for
    the window, 202 and 429 alike (20 a token, 600 here): every instance's memory filled at the pace of the source's
    concurrency, not of its rate."""
    clock = Clock(1_764_000_000.0)
    claims = SlowClaims(clock)
    settings = GatewaySettings(rate_per_s=1.0, rate_burst=1, signature_tolerance_s=60)
    gateway = create_app(settings, REGISTRY, CREDENTIALS, Recording(), clock=clock, ticks=clock, claims=claims)

    for second in range(30):
        statuses = await asyncio.gather(*(one(gateway, clock, second * AT_ONCE + i) for i in range(AT_ONCE)))
        assert set(statuses) <= {202, 429}, statuses
        clock.now += 1.0
    nonces = sum(1 for key in claims.table.held if key.startswith("nonce:province:"))
    assert nonces <= 1 + 150 + AT_ONCE, f"{nonces} nonces held by a source whose rate makes 151 while they are held"


async def test_a_source_within_its_rate_is_never_refused_for_its_nonces() -> None:
    """One signed request a second at a rate of 1 a second, for six times the nonces' window: every one is 202 (the
    bound counts the nonces still held until the next prune of the expired ones)."""
    clock = Clock(1_764_000_000.0)
    settings = GatewaySettings(rate_per_s=1.0, rate_burst=1, signature_tolerance_s=10)
    gateway = create_app(settings, REGISTRY, CREDENTIALS, Recording(), clock=clock, ticks=clock,
                         claims=SlowClaims(clock))
    statuses = []
    for n in range(120):
        statuses.append(await one(gateway, clock, n))
        clock.now += 1.0
    assert statuses == [202] * 120
