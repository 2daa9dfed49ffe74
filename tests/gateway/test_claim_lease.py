"""An Idempotency-Key's lease outlasts what its request may wait on Kafka once it holds the key: a lease shorter than
that is refused at start (settings audit: a lease ending while the request's transaction was still waiting for the
broker let a retry on another instance claim the key and publish it again, two 202s, the events twice)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
from pydantic import ValidationError

from services.gateway.app import create_app
from services.gateway.handler import Gateway
from services.gateway.memory_claims import MemoryClaims
from services.gateway.publisher import STOP_TIMEOUT_S
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import API_KEY, CREDENTIALS, REGISTRY, Clock, Recording, call
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit


class SlowBroker(Recording):
    """Publishes once `done` is set, while the request's clock moves on by `wait_s` (a broker slow to commit)."""

    def __init__(self, clock: Clock, wait_s: float) -> None:
        super().__init__()
        self.clock, self.wait_s, self.waiting, self.done = clock, wait_s, asyncio.Event(), asyncio.Event()

    async def publish(self, records: list[Any], until: float = float("inf")) -> None:
        self.clock.now += self.wait_s
        self.waiting.set()
        await self.done.wait()
        await super().publish(records)


async def raced(settings: GatewaySettings, clock: Clock, claims: MemoryClaims, slow: Recording,
                started: asyncio.Event | None = None, finish: asyncio.Event | None = None) -> tuple[int, int, int]:
    """A request held on one instance (by `slow`, a SlowBroker, unless `started` and `finish` say when it is held and
    let go) and its retry, with the same Idempotency-Key, on another: the first's status, how many times its events
    were published in all, and the retry's status."""
    other = Recording()
    first, second = (create_app(settings, REGISTRY, CREDENTIALS, pub, clock=clock, claims=claims)
                     for pub in (slow, other))
    body = orjson.dumps([canonical_dossier("lease-1")])
    headers = [(b"x-api-key", API_KEY.encode()), (b"content-type", b"application/json"),
               (b"idempotency-key", b"key-1")]
    answering = asyncio.ensure_future(call(first, headers, body))
    await (started or cast(SlowBroker, slow).waiting).wait()
    retry = await call(second, headers, body)
    (finish or cast(SlowBroker, slow).done).set()
    return (await answering).status, len(slow.sent) + len(other.sent), retry.status


async def test_a_key_whose_lease_ends_while_its_request_waits_on_the_broker_is_published_twice() -> None:
    """What the old bound allowed (a 5 s lease, a 10 s Kafka wait): the retry, on another instance, wins the key once
    the lease is over, and both requests publish; the lease the settings now require keeps the retry out (409)."""
    for lease_s, published in ((5.0, 2), (GatewaySettings().key_held_s() + 1, 1)):
        clock, claims = Clock(), MemoryClaims(Clock())
        claims.clock = clock
        settings = GatewaySettings.model_construct(**{**GatewaySettings().model_dump(), "claim_lease_s": lease_s})
        status, sent, retried = await raced(settings, clock, claims, SlowBroker(clock, wait_s=10.0))
        assert status == 202
        assert sent == published, (lease_s, retried)


@pytest.mark.parametrize(("env", "held"), [({"claim_lease_s": 65.0}, 65.0), ({"kafka_timeout_s": 20.0}, 125.0)])
def test_a_lease_not_above_what_a_request_may_wait_on_kafka_is_refused(env: dict[str, float], held: float) -> None:
    """The claim's three waits, a reconnection and a transaction ahead with its producer's drop, its own transaction:
    with the default 10 s Kafka timeout 65 s; the default lease (90 s) is above it."""
    with pytest.raises(ValidationError, match=f"GATEWAY_CLAIM_LEASE_S .* above .*{held:g} s"):
        GatewaySettings(**env)
    assert GatewaySettings().claim_lease_s > GatewaySettings().key_held_s()


class SlowClaims(MemoryClaims):
    """A claim that takes `wait_s` after its lease was stamped (the Kafka claims stamp it, then wait for their
    restore, the write's acknowledgement and their reader reaching the claim: each up to GATEWAY_KAFKA_TIMEOUT_S)."""

    def __init__(self, clock: Clock, wait_s: float) -> None:
        super().__init__(clock)
        self.wait_s, self.slowed = wait_s, False

    async def claim(self, key: str, fingerprint: str, lease_s: float) -> Any:
        said = await super().claim(key, fingerprint, lease_s)
        if not self.slowed:  # the first request's claim only
            self.slowed = True
            self.clock.now += self.wait_s
        return said


async def test_a_lease_the_settings_accept_outlasts_every_wait_each_within_the_kafka_timeout() -> None:
    """The default settings' lease outlasts a request whose every wait on Kafka ends just within
    GATEWAY_KAFKA_TIMEOUT_S: three in its claim (the claims' restore, the write, the reader reaching it), then, in the
    publisher's lock, a transaction ahead given up and its producer's stop, a reconnection given up, its own
    transaction. `key_held_s` counted one wait for the claim (45 s against 65 s), so the default lease (60 s) ended
    first and a retry on another instance published the request again."""
    settings = GatewaySettings()
    t = settings.kafka_timeout_s
    clock = Clock()
    claims = SlowClaims(clock, wait_s=3 * t)
    status, sent, retried = await raced(settings, clock, claims, SlowBroker(clock, wait_s=(t + STOP_TIMEOUT_S) + t + t))
    assert status == 202
    assert sent == 1, retried


async def test_a_check_waiting_its_turn_does_not_spend_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large body waits for the one check thread (`handler.CHECK_THREADS`) behind the others, ~1 s each at the
    10 MiB limit, a wait no setting bounds. The key was claimed before that wait (review of the lease: it counts Kafka
    waits only), so a request whose check waited past its lease left the key to its retry on another instance, and
    both published. The body is checked before its key is claimed: the retry publishes, the request answers with
    the retry's answer, the events once."""
    settings, clock = GatewaySettings(), Clock()
    claims, original, checks = MemoryClaims(clock), Gateway.check, 0
    waiting, done = asyncio.Event(), asyncio.Event()

    async def queued(self: Gateway, *args: Any) -> Any:
        nonlocal checks
        checks += 1
        if checks == 1:  # the first request's check, behind the others
            clock.now += settings.claim_lease_s + 1
            waiting.set()
            await done.wait()
        return await original(self, *args)

    monkeypatch.setattr(Gateway, "check", queued)
    status, sent, retried = await raced(settings, clock, claims, Recording(), started=waiting, finish=done)
    assert (status, sent, retried) == (202, 1, 202)
