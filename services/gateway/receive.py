"""Step 4 of `services.gateway.handler`: a request's body, read from the wire under the limits that hold while it
streams (`bodies.read_limited`).

A signed request's body is read before its signature can be checked (its HMAC covers the body): anyone who knows a
signing source's id can make the gateway read one. Its bytes are counted against its peer address's allowance of
failed signatures, and against a total for all addresses (`ratelimit.InFlight`), until the signature is verified; a
body that fails, or passes its address's allowance, costs the address one of them. Bodies being read hold
`bodies.MEMORY_BYTES` in memory at most, all together. A body of a known caller is held against its source's share
(an API key's before it is read, a signed one once verified) and, once it has arrived, against a total for all
sources, until it is answered: it is loaded whole for its check and waits its turn for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi import Request

from services.gateway.auth import Identified, Unauthenticated
from services.gateway.bodies import MEMORY_BYTES, Unadmitted, declared_length, read_limited, received
from services.gateway.ratelimit import Budget, Held, InFlight, RateLimiter
from services.gateway.settings import GatewaySettings

MAX_FAILING_PEERS = 10_000
"""Peer addresses with failed signatures counted at most; past it the least recently seen is forgotten."""


@dataclass
class Receiver:
    settings: GatewaySettings
    ticks: Callable[[], float]
    """What the allowances are measured by (`Gateway.ticks`)."""
    failures: RateLimiter = field(init=False)
    """Failed signatures per peer address."""
    unverified: InFlight = field(init=False)
    """Bytes of signed bodies read before their signature is known, per peer address within what its failed
    signatures left stand for, and in all within `GATEWAY_UNVERIFIED_BODY_BYTES`."""
    memory: Budget = field(init=False)
    """The bytes in memory of every body being read (`bodies.MEMORY_BYTES`); the rest waits in temporary files."""
    held: Budget = field(init=False)
    """The bytes of bodies from known callers, from before they are read until they are answered: loaded whole for
    their check, one at a time (`handler.CHECK_THREADS`), they waited without bound (100 posts of 10 MB at once:
    1.1 GB, audit of 2026-12-06)."""

    def __post_init__(self) -> None:
        self.failures = RateLimiter(self.settings.failed_signatures_per_s, self.settings.failed_signatures_burst,
                                    max_keys=MAX_FAILING_PEERS)
        self.unverified = InFlight(self.failures, self.settings.max_body_bytes, self.settings.unverified_body_bytes)
        self.memory = Budget(MEMORY_BYTES)
        self.held = Budget(self.settings.held_body_bytes, self.settings.held_body_bytes_per_source)

    def failed_signature(self, peer: str) -> None:
        self.failures.take(peer, self.ticks())

    def refused_unread(self, who: Identified, peer: str) -> int:
        """Seconds a signed request from `peer` must wait, its body unread, when the address is past its allowance
        of failed signatures (else 0)."""
        return self.failures.wait(peer, self.ticks()) if who.pending is not None else 0

    @contextmanager
    def holding(self, source: str) -> Iterator[Held]:
        """A request's share of the budget of bodies held (`GATEWAY_HELD_BODY_BYTES`, per source
        `GATEWAY_HELD_BODY_BYTES_PER_SOURCE`), given back once it is answered."""
        held = Held(self.held, source)
        try:
            yield held
        finally:
            held.release()

    async def read(self, request: Request, who: Identified, peer: str, held: Held) -> bytes:
        """The body, its signature (if any) verified over it, its bytes in `held`. Raises `bodies.TooLarge`,
        `ClientDisconnect`, `auth.Unauthenticated` for a signature that does not cover it, and `bodies.Unadmitted` for a
        body past a budget: an API-key caller's past its source's share before a byte is read if it declares its length,
        a signed one's once verified; past the total once it has arrived, before it is loaded. A signature that fails,
        or a signed body past its address's allowance, counts as a failed signature of `peer` (an unadmitted body's
        bytes were read for nothing, else a wave of them reads on); one past the total of unverified bodies does not
        (the address may be anyone's)."""
        counted, taken = 0, 0

        def admit(size: int) -> None:
            nonlocal counted, taken
            if who.pending is None:  # a known caller's bytes, held as they come if no length was declared
                taken += size
                if (over := held.grow_to(taken)) is not None:
                    raise Unadmitted("held", over)
            elif (over := self.unverified.take(peer, size, self.ticks())) is not None:
                raise Unadmitted("unverified", over)
            else:  # counted against its address until it is verified
                counted += size

        def arrived(size: int) -> None:  # the body is in, and is loaded next: now it counts in the total
            if who.pending is not None:
                who.pending.verify()
            if (over := held.grow_to(size, in_total=True)) is not None:
                raise Unadmitted("held", over)

        try:
            declared = declared_length(request.headers.get("content-length")) if who.pending is None else None
            if declared is not None and (over := held.grow_to(declared)) is not None:
                raise Unadmitted("held", over)
            return await read_limited(received(request.receive), self.settings.max_body_bytes, self.memory, who.pending,
                                      arrived, admit)
        except Unauthenticated:
            self.failed_signature(peer)
            raise
        except Unadmitted as exc:
            if exc.budget == "unverified" and exc.over == "key":
                self.failed_signature(peer)
            raise
        finally:
            self.unverified.release(peer, counted)
