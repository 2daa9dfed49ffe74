"""Notify's resolver: a host name is never connected to at a cloud metadata, link-local, unspecified or multicast
address."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.notification import ChannelKind
from services.notify import rules
from services.notify.channels.base import DeliveryError, compose
from services.notify.channels.http import ADDRESS_REFUSED, HttpClient, Webhooks
from services.notify.channels.resolver import AddressRefused, GuardedResolver, allowed
from services.notify.subscribers import Registry, Subscriber
from tests.kafkatools import free_port
from tests.notify.events import directory, dossier

pytestmark = pytest.mark.unit

NAME = "hooks.example.vn"


def answer(address: str, port: int = 0) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=NAME, host=address, port=port, family=family, proto=0,
                         flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)


class Answers(AbstractResolver):
    """A DNS that answers every name with the test's chosen addresses, as a subscriber controlling its zone could."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [answer(a, port) for a in self.addresses]

    async def close(self) -> None: ...


@pytest.fixture
async def hook_server() -> AsyncIterator[tuple[int, list[str]]]:
    """A webhook receiver on 127.0.0.1: its port and the paths it was sent."""
    hits: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.add_routes([web.post("/hook", receive)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, hits
    await runner.cleanup()


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a socket of the test's event loop connects to (aiohttp connects through `loop.sock_connect`)."""
    loop, tried = asyncio.get_running_loop(), []
    original = loop.sock_connect

    async def recording(sock: socket.socket, address: Any) -> None:
        tried.append(address[0])
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", recording)
    return tried


async def send_webhook(port: int, dns: AbstractResolver) -> None:
    reg = Registry.model_validate({"subscribers": [{"name": "prov-08", "url": f"http://{NAME}:{port}/hook",
                                                    "secret": "s3"}]})
    hook = next(x for x in rules.for_event(dossier(), directory(), reg) if x.channel is ChannelKind.WEBHOOK)
    http = HttpClient(2, dns=dns)
    try:
        await Webhooks(http, reg).send(compose(hook, 2))
    finally:
        await http.close()


@pytest.mark.parametrize("address", ["169.254.169.254", "0.0.0.0"])
async def test_a_name_resolving_to_a_refused_address_is_not_connected_to(
        address: str, hook_server: tuple[int, list[str]], connects: list[str]) -> None:
    """A subscriber's name pointed at the metadata address (or at 0.0.0.0, which reaches this host's receiver): no
    connection is made at all and the send fails as `address_refused`, retried later (DNS may be put right)."""
    port, hits = hook_server
    with pytest.raises(DeliveryError) as refused:
        await send_webhook(port, Answers(address))
    assert (refused.value.reason, refused.value.retryable, refused.value.unreached) == (ADDRESS_REFUSED, True, True)
    assert connects == [] and hits == []


async def test_only_the_allowed_addresses_of_a_name_are_connected_to(
        hook_server: tuple[int, list[str]], connects: list[str]) -> None:
    """A name resolving to the metadata address and to 127.0.0.1: only 127.0.0.1 is tried, and it gets the hook."""
    port, hits = hook_server
    await send_webhook(port, Answers("169.254.169.254", "127.0.0.1"))
    assert connects == ["127.0.0.1"] and hits == ["/hook"]


@pytest.mark.parametrize("address", ["::ffff:169.254.169.254", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "fe80::1",
                                     "fe80::1%eth0", "::ffff:0.0.0.0", "fd00:ec2::254", "fd00:ec2::254%eth0",
                                     "100.100.100.200", "::ffff:100.100.100.200"])
async def test_link_local_unspecified_and_multicast_answers_are_refused(address: str) -> None:
    """Each refused kind of address (cloud metadata ones outside link-local too), in IPv4, IPv6 and IPv4-mapped
    form, leaves nothing; the error does not name the host."""
    with pytest.raises(AddressRefused) as refused:
        await GuardedResolver(Answers(address)).resolve(NAME, 443)
    assert NAME not in str(refused.value) and "link-local" in str(refused.value)


async def test_a_name_without_an_address_fails_as_an_os_error() -> None:
    """An empty answer is an OSError (aiohttp's connector would otherwise fail an assertion: an uncaught
    AssertionError, not a delivery failure)."""
    with pytest.raises(OSError, match="no address"):
        await GuardedResolver(Answers()).resolve(NAME, 443)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.7", "192.168.1.20", "203.0.113.9", "fd00:ec2::253",
                                     "100.100.100.201"])
async def test_loopback_private_and_public_answers_are_kept(address: str) -> None:
    """Integrators on internal networks (and the tests, on 127.0.0.1) stay reachable."""
    assert [a["host"] for a in await GuardedResolver(Answers(address)).resolve(NAME, 443)] == [address]


async def test_localhost_resolves_through_the_guard() -> None:
    """`localhost`, looked up by aiohttp's own resolver, keeps its loopback addresses."""
    kept = await GuardedResolver(ThreadedResolver()).resolve("localhost", 80)
    assert kept and all(ipaddress.ip_address(a["host"]).is_loopback for a in kept)


def registry_takes(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    host = f"[{address}]" if address.version == 6 else str(address)
    try:
        Subscriber.model_validate({"name": "s", "url": f"http://{host}/h", "secret": "s3"})
    except ValidationError:
        return False
    return True


@settings(max_examples=1000, deadline=None)
@given(st.ip_addresses())
@example(ipaddress.ip_address("::ffff:169.254.169.254"))
@example(ipaddress.ip_address("::ffff:10.0.0.1"))
@example(ipaddress.ip_address("fd00:ec2::254"))
@example(ipaddress.ip_address("100.100.100.200"))
def test_the_resolver_and_the_registry_refuse_the_same_addresses(
        address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """An address the registry refuses in a URL is the one the resolver drops from an answer, and no other."""
    assert bool(allowed([answer(str(address))])) == registry_takes(address)
