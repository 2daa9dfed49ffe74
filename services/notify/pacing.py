"""Pacing provider calls by their channel's rate bucket: a token before every call, a fallback's too.

One bucket a channel, shared by both lanes (`policy.TokenBucket`): its rate is what that provider gets from this
worker, whichever lane or channel the call comes from. A send that falls back to another channel (ZNS to SMS) is a
call to that channel's provider, so it takes a token of that channel's bucket before the call, as a send of its own
would (before 2026-12-04 it took the first channel's only: during a ZNS outage the SMS gateway got its own rate plus
every Zalo request's fallback, more than its contract allows, and a gateway enforcing it refuses emergencies and
routine messages alike).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from schemas.notification import ChannelKind
from services.notify.circuits import FallbackCircuit
from services.notify.policy import TokenBucket


async def take_token(bucket: TokenBucket, urgent: bool, check: Callable[[], None] | None = None) -> None:
    """Take a token of the channel's bucket, both lanes' (its rate is what the provider gets); an emergency may take
    one the routine senders then wait for (`TokenBucket`). A token is a matter of time, not of an event: sleep until
    the bucket has refilled enough (an await: the loop, and the other lanes' senders, go on meanwhile)."""
    while (wait := bucket.wait_time(time.monotonic(), urgent)) > 0:
        if check is not None:  # inside the fence (a fallback): a revocation does not wait for the token
            check()
        await asyncio.sleep(wait)


class PacedFallback:
    """The `FallbackGate` of one call: the fallback's circuit decides first (`FallbackCircuit`, when there are
    circuits: a fallback it holds takes no token); then the call waits for a token of the fallback channel's bucket,
    `urgent` for an emergency, which may borrow as its own channel's emergencies do (a routine one waits while they
    do). Only a send that falls back asks: a Zalo message ZNS takes spends Zalo's token alone."""

    __slots__ = ("buckets", "check", "circuit", "urgent")

    def __init__(self, buckets: Mapping[ChannelKind, TokenBucket], urgent: bool,
                 circuit: FallbackCircuit | None, check: Callable[[], None]) -> None:
        self.buckets, self.urgent, self.circuit, self.check = buckets, urgent, circuit, check

    async def admit(self, to: ChannelKind) -> bool:
        if self.circuit is not None and not self.circuit.admit(to):
            return False
        if (bucket := self.buckets.get(to)) is not None:
            await take_token(bucket, self.urgent, self.check)
        self.check()  # the fence's stall check (ADR 0012), again: the first provider's call and the token were awaits
        return True
