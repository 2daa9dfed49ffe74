"""Does the broker answer? The probe that keeps `/readyz` truthful while a worker waits out an outage.

A worker whose producer rides out an outage (sends pending, never failed) and whose consumer just fetches
nothing looks healthy to itself: nothing raises. Asking the broker for end offsets every second, with a
short time limit, tells the outage apart from a quiet topic.

`bootstrap_answers` asks without a client of the worker's (after its run failed): it tells an outage, which
`/healthz` leaves to `/readyz`, from a loop that fails while the brokers answer (`services.common.streak`).
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from services.common.clients import connection_options
from services.common.closing import close_within
from services.common.health import Health
from services.common.settings import KafkaConnection
from services.common.streak import UNHEALTHY_AFTER_S, Streak

PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 3.0
REFUSED = "BrokerRefused"
"""The error a probe that failed while the brokers answer is counted as (`probe_loop`'s `health`)."""
CONNECT_TIMEOUT_S = 1.0
"""How long `bootstrap_answers` waits for each bootstrap address to reply to a connection."""


async def broker_answers(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition],
                         timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the broker answers a request for `partitions`' end offsets within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.end_offsets(list(partitions))
    except (TimeoutError, KafkaError):
        return False
    return True


async def probe_loop(answers: Callable[[], Awaitable[bool]], report: Callable[[bool], None],
                     every_s: float = PROBE_EVERY_S, health: Health | None = None) -> None:
    """Report whether the broker answers, every `every_s` seconds, until cancelled (a supervised task).

    With `health`, a probe that fails while the brokers answer (`Health.broker_answers`: they refuse this worker, e.g.
    its password changed on the broker since its connections were made) counts as a retrying loop's failure
    (`streak`): failing for as long as the runtime's restarts would take turns `/healthz` 503 (`service.crash_loop`),
    an answer makes it 200 again. For a worker whose run does not fail on it (notify's consumers only wait on their
    fetches), which otherwise said `broker unreachable` for good with `/healthz` 200. No broker answering at all is an
    outage: `/readyz` only."""
    refusals = None if health is None else Streak(health, "broker probe", at_least_s=UNHEALTHY_AFTER_S)
    while True:
        ok = await answers()
        report(ok)
        if refusals is not None:
            if ok:
                refusals.progressed()
            elif await refusals.health.broker_answers():
                refusals.failed(REFUSED)
        await asyncio.sleep(every_s)


async def bootstrap_answers(conn: KafkaConnection, service: str = "probe", timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the brokers of `conn` answer: a metadata request within `timeout_s` succeeds, or else one bootstrap
    address at least replies to a connection (a broker is there but refuses this client: its credentials, TLS,
    rights; `replies`). False when none of them can be reached, or those that accept a connection stay silent (a
    broker frozen or out of threads: an outage too)."""
    client = AIOKafkaClient(**connection_options(conn), client_id=f"commune-bus-{service}-probe",
                            request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await client.bootstrap()
        return True
    except (TimeoutError, KafkaError, OSError):
        pass
    finally:
        await close_within(service, "probe", client.close, timeout_s=timeout_s)
    tls = connection_options(conn).get("ssl_context")
    for host, port in addresses(conn.bootstrap):
        if await replies(host, port, tls):
            return True
    return False


API_VERSIONS_V0 = struct.pack(">hhih", 18, 0, 0, len(b"commune-bus-probe")) + b"commune-bus-probe"
"""Kafka's ApiVersions request, version 0 (no body), the one a broker answers before any authentication."""


async def replies(host: str, port: int, tls: ssl.SSLContext | None = None,
                  timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether whatever listens at `host:port` replies within `timeout_s` to a connection (over TLS with `tls`) and
    an ApiVersions request: with bytes, a hang-up, a reset or a TLS alert. False when nothing accepts the
    connection, or it is accepted (by the kernel, for a process that is frozen) and nothing comes back."""
    return await answer(host, port, tls, timeout_s) is True


async def answer(host: str, port: int, tls: ssl.SSLContext | None = None,
                 timeout_s: float = CONNECT_TIMEOUT_S) -> bool | None:
    """True when whatever listens at `host:port` replies within `timeout_s` (as `replies`); False when it stays
    silent that long (a connection accepted and no answer, or packets dropped on the way); None when there is
    nothing to reach (refused, no route, a name that does not resolve): a client is told that at once."""
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None)
            writer.write(struct.pack(">i", len(API_VERSIONS_V0)) + API_VERSIONS_V0)
            await writer.drain()
            await reader.read(4)  # bytes, or b"" at a hang-up: either is an answer
        return True
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True  # the other end spoke TLS and refused us, or hung up on us: it is there
    except TimeoutError:
        return False
    except OSError:
        return None
    finally:
        if writer is not None:
            writer.transport.abort()


def addresses(bootstrap: str) -> list[tuple[str, int]]:
    """`host:port[,host:port]` (an IPv6 host in brackets) as (host, port) pairs; a malformed one is left out."""
    found = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            found.append((host.strip("[]"), int(port)))
    return found
