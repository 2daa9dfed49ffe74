"""The gateway's `/readyz`: ready once the broker has answered and the claims are restored, not while not.

The transactional producer is started at start (not at the first request), and
started again after a request found the broker gone; until then `/readyz`
answers 503 so a load balancer sends requests to a gateway that can publish. A
fenced producer (another instance took this one's id) ends the watch with `Fenced`:
the run fails and the process exits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Protocol

from services.common.health import Health
from services.common.streak import UNHEALTHY_AFTER_S, Streak
from services.gateway.publisher import BrokerUnavailable, Fenced

CHECK_EVERY_S = 1.0


class Broker(Protocol):
    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...


async def watch_broker(broker: Broker, health: Health, stop: asyncio.Event, every_s: float = CHECK_EVERY_S,
                       waiting: Callable[[], str | None] = lambda: None) -> None:
    """Connect, and reconnect whenever the connection was dropped; say ready only while connected and nothing else
    is `waiting` (the claims: restoring, or the broker not answering their reader's probe). Connections refused
    again and again for as long as the runtime's restarts would take (`streak.UNHEALTHY_AFTER_S`) while the brokers
    answer turn `/healthz` 503 (no broker answering at all is an outage: `/readyz` only); a connection makes it 200
    again.

    Ends on `stop`; raises `Fenced`."""
    streak = Streak(health, "broker watch", at_least_s=UNHEALTHY_AFTER_S)
    while not stop.is_set():
        if not broker.connected:
            try:
                await broker.connect()
            except Fenced:
                raise
            except BrokerUnavailable as exc:
                _say(health, False, f"broker unavailable ({exc})")
                await streak.failed_unless_outage(str(exc), stop)  # the type name (`KafkaPublisher._translate`)
            else:
                streak.progressed()
        if broker.connected:
            if (why := waiting()) is None:
                _say(health, True, "broker answered")
            else:
                _say(health, False, why)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


def _say(health: Health, ready: bool, detail: str) -> None:
    if (health.ready, health.detail) != (ready, detail):
        health.set_ready(ready, detail)
