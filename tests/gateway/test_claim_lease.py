"""An Idempotency-Key's lease outlasts what its request may wait on Kafka once it holds the key: a lease shorter than
that is refused at start (settings audit: a lease ending while the request's transaction was still waiting for the
broker let a retry on another instance claim the key and publish it again, two 202s, the events twice)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from services.gateway.app import create_app
from services.gateway.memory_claims import MemoryClaims
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import API_KEY, CREDENTIALS, REGISTRY, Clock, Recording, call
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit


class SlowBroker(Recording):
    """Publishes once `done` is set, while the request's clock moves on by `wait_s` (a broker slow to commit)."""

    def __init__(self, clock: Clock, wait_s: float) -> None:
        super().__init__()
        self.clock, self.wait_s, self.waiting, self.done = clock, wait_s, asyncio.Event(), asyncio.Event()

    async def publish(self, records: list[Any]) -> None:
        self.clock.now += self.wait_s
        self.waiting.set()
        await self.done.wait()
        await super().publish(records)


async def test_a_key_whose_lease_ends_while_its_request_waits_on_the_broker_is_published_twice() -> None:
    """What the old bound allowed (a 5 s lease, a 10 s Kafka wait): the retry, on another instance, wins the key once
    the lease is over, and both requests publish; the lease the settings now require keeps the retry out (409)."""
    for lease_s, published in ((5.0, 2), (GatewaySettings().key_held_s() + 1, 1)):
        clock, claims = Clock(), MemoryClaims(Clock())
        claims.clock = clock
        slow, other = SlowBroker(clock, wait_s=10.0), Recording()
        settings = GatewaySettings.model_construct(**{**GatewaySettings().model_dump(), "claim_lease_s": lease_s})
        first, second = (create_app(settings, REGISTRY, CREDENTIALS, pub, clock=clock, claims=claims)
                         for pub in (slow, other))
        body = orjson.dumps([canonical_dossier("lease-1")])
        headers = [(b"x-api-key", API_KEY.encode()), (b"content-type", b"application/json"),
                   (b"idempotency-key", b"key-1")]
        answering = asyncio.ensure_future(call(first, headers, body))
        await slow.waiting.wait()
        retry = await call(second, headers, body)
        slow.done.set()
        assert (await answering).status == 202
        assert len(slow.sent) + len(other.sent) == published, (lease_s, retry.status)


@pytest.mark.parametrize(("env", "held"), [({"claim_lease_s": 45.0}, 45.0), ({"kafka_timeout_s": 20.0}, 85.0)])
def test_a_lease_not_above_what_a_request_may_wait_on_kafka_is_refused(env: dict[str, float], held: float) -> None:
    """The claim's read, a reconnection and a transaction ahead with its producer's drop, its own transaction: with
    the default 10 s Kafka timeout 45 s; the default lease (60 s) is above it."""
    with pytest.raises(ValidationError, match=f"GATEWAY_CLAIM_LEASE_S .* above .*{held:g} s"):
        GatewaySettings(**env)
    assert GatewaySettings().claim_lease_s > GatewaySettings().key_held_s()

