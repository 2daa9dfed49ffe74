"""The resolver of notify's HTTP client: a host name's addresses, less those notify never sends to.

The registry refuses a subscriber URL written with a cloud metadata, link-local, unspecified or multicast
address, but a host name's owner decides what it resolves to, at every lookup: after any check, too (DNS
rebinding). So the rule (`subscribers.refused_address`) is applied here, to the very addresses the connector
then connects to: a refused one is dropped, and a name left with none fails the lookup with `AddressRefused`
(aiohttp raises `ClientConnectorDNSError` around it; no connection is made), which `HttpClient.post` reports as
`address_refused`. Loopback and private addresses are allowed: integrators on internal networks use them.

aiohttp never asks a resolver about a host written as an IP address (`TCPConnector._resolve_host` answers it
itself): a literal in a provider URL from settings (`NOTIFY_SMS_URL`, `NOTIFY_ZALO_URL`) is not checked here.
The subscriber registry refuses such literals when it is read.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from services.notify.subscribers import refused_address


class AddressRefused(OSError):
    """A host name resolved only to addresses notify never sends to. The message names the reason, never the host
    (a host can be a person's or an infrastructure detail)."""

    def __init__(self) -> None:
        super().__init__(None, "resolved only to cloud metadata, link-local, unspecified or multicast addresses")


def allowed(answers: list[ResolveResult]) -> list[ResolveResult]:
    """The answers notify may connect to, in their order."""
    return [a for a in answers if not refused_address(a["host"])]


class GuardedResolver(AbstractResolver):
    """`inner`'s answers less the refused ones; `AddressRefused` when it answered only refused addresses, an OSError
    when it answered none (aiohttp's connector asserts at least one, or an OSError)."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self.inner.resolve(host, port, family)
        kept = allowed(answers)
        if not kept:
            raise AddressRefused if answers else OSError(None, "the name has no address")
        return kept

    async def close(self) -> None:
        await self.inner.close()
