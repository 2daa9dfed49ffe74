"""The gateway's claims on the real broker after the wall clock steps back: expired nonces are pruned at once, not
after the old clock's next prune (`claims.prune_due`). Before, a step back of an hour kept every expired nonce counted
against its source's cap for that hour (`idempotency.nonces_spent`), and a source sending within its rate got 429."""

from __future__ import annotations

import asyncio

import pytest

from schemas.topics import GATEWAY_CLAIMS, scoped
from services.common.health import Health
from services.common.settings import KafkaConnection
from services.gateway import idempotency
from services.gateway.claimlog import KafkaClaims
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka
NONCES = 20
LEASE_S = 10.0


async def test_expired_nonces_are_pruned_at_once_after_the_clock_steps_back(kafka_bootstrap: str, unique: str) -> None:
    wall = [1_800_000_000.0]
    claims = KafkaClaims(KafkaConnection(bootstrap=kafka_bootstrap), scoped(GATEWAY_CLAIMS, f"gwclock{unique}"),
                         client_id="tests-gateway-clock", timeout_s=10.0, clock=lambda: wall[0])
    reader = asyncio.create_task(claims.run(Health("gateway")))
    scope = "nonce:src-a"

    async def spend(first: int) -> None:
        for n in range(first, first + NONCES):
            await claims.claim(idempotency.nonce_claim(f"src-a:{n:032x}"), "", LEASE_S)

    try:
        await eventually_async(lambda: claims.waiting() is None, timeout=60, interval=0.1, what="claims restored")
        await spend(0)
        assert claims.live(scope) == NONCES
        wall[0] += 100  # every lease over: pruned within the reader's next turns
        await eventually_async(lambda: claims.live(scope) == 0, timeout=10, interval=0.1, what="the first pruned")

        wall[0] -= 3600  # an NTP step back of an hour; the same rate of nonces goes on
        await spend(NONCES)
        assert claims.live(scope) == NONCES
        wall[0] += 100  # their leases over too, an hour before the last prune by the wall clock
        await eventually_async(lambda: claims.live(scope) == 0, timeout=10, interval=0.1,
                               what="the nonces after the step back pruned (before: counted for an hour)")
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
