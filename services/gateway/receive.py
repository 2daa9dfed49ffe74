"""Step 4 of `services.gateway.handler`: a request's body, read from the wire under the limits that hold while it
streams (`bodies.read_limited`).

A signed request's body is read before its signature can be checked (its HMAC covers the body): anyone who knows a
signing source's id can make the gateway read one. Its bytes are counted against its peer address's allowance of
failed signatures, and against a total for all addresses (`ratelimit.InFlight`), until the signature is verified; a
body that fails, or passes its address's allowance, costs the address one of them. Bodies being read hold
`bodies.MEMORY_BYTES` in memory at most, all together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from services.gateway.auth import Identified, Unauthenticated
from services.gateway.bodies import MEMORY_BYTES, Unadmitted, read_limited, received
from services.gateway.ratelimit import Budget, InFlight, RateLimiter
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

    def __post_init__(self) -> None:
        self.failures = RateLimiter(self.settings.failed_signatures_per_s, self.settings.failed_signatures_burst,
                                    max_keys=MAX_FAILING_PEERS)
        self.unverified = InFlight(self.failures, self.settings.max_body_bytes, self.settings.unverified_body_bytes)
        self.memory = Budget(MEMORY_BYTES)

    def failed_signature(self, peer: str) -> None:
        self.failures.take(peer, self.ticks())

    def refused_unread(self, who: Identified, peer: str) -> int:
        """Seconds a signed request from `peer` must wait, its body unread, when the address is past its allowance
        of failed signatures (else 0)."""
        return self.failures.wait(peer, self.ticks()) if who.pending is not None else 0

    async def read(self, request: Request, who: Identified, peer: str) -> bytes:
        """The body, its signature (if any) verified over it. Raises `bodies.TooLarge`, `ClientDisconnect`,
        `auth.Unauthenticated` for a signature that does not cover it and `bodies.Unadmitted` for a signed body past
        its address's allowance (both counted as a failed signature of `peer`: an unadmitted body's bytes were read
        for nothing, else a wave of them reads on) or past the total (not counted: the address may be anyone's)."""
        counted = 0

        def admit(size: int) -> None:  # a signed body's bytes, counted against its address until it is verified
            nonlocal counted
            if (over := self.unverified.take(peer, size, self.ticks())) is not None:
                raise Unadmitted("unverified", over)
            counted += size

        def arrived(_size: int) -> None:
            if who.pending is not None:
                who.pending.verify()

        try:
            return await read_limited(received(request.receive), self.settings.max_body_bytes, self.memory, who.pending,
                                      arrived, admit if who.pending is not None else None)
        except Unauthenticated:
            self.failed_signature(peer)
            raise
        except Unadmitted as exc:
            if exc.over == "key":
                self.failed_signature(peer)
            raise
        finally:
            self.unverified.release(peer, counted)
