"""Small real-broker helpers for tests: produce records, read a topic to the end, run a service process."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common import clients
from services.common.admin import partition_counts
from services.common.settings import KafkaConnection
from tests.run import PORT_SHARE
from tests.waiting import eventually_async

ROOT = Path(__file__).resolve().parent.parent
Record = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]  # key, value, headers


class Producing:
    """One started producer for many `send`s (`async with Producing(bootstrap) as p: await p.send(...)`): on the
    secure broker a producer's start costs two TLS + SCRAM handshakes (ADR 0014), so a test sending in slices
    keeps one."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = clients.producer(KafkaConnection(bootstrap=bootstrap), client_id="tests",
                                         max_request_size=12 * 1024 * 1024, linger_ms=5)

    async def __aenter__(self) -> Producing:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, topic: str, records: Iterable[Record]) -> int:
        """Send `records` to `topic` and wait until every one is acknowledged; how many were sent."""
        futures = [await self.producer.send(topic, value, key=key, headers=list(headers))
                   for key, value, headers in records]
        await asyncio.gather(*futures)
        return len(futures)


async def produce(bootstrap: str, topic: str, records: Iterable[Record]) -> int:
    """Send `records` to `topic` with a producer of this call only; how many were sent."""
    async with Producing(bootstrap) as producing:
        return await producing.send(topic, records)


async def transactions_settled(bootstrap: str, topics: Iterable[str], timeout_s: float = 30.0) -> None:
    """Return once no transaction is open on `topics`: each partition's last stable offset (a read_committed
    reader's end) has reached its high watermark. A producer's commit returns once the coordinator has logged it,
    before its markers are written to the partitions, so a read_committed reader started at once can stop short of
    the records just committed (CI 2026-12-05: a key store started after `write_sealed` read 57 of 61 key records).
    Only for topics no other producer is writing to."""
    conn = KafkaConnection(bootstrap=bootstrap)
    counts = await partition_counts(conn, topics)
    tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    ends = {level: clients.consumer(conn, client_id="tests", isolation_level=level)
            for level in ("read_committed", "read_uncommitted")}
    for consumer in ends.values():
        await consumer.start()
    try:
        async def settled() -> bool:
            stable, high = [await c.end_offsets(tps) for c in ends.values()]
            return stable == high
        await eventually_async(settled, timeout=timeout_s, interval=0.05, what=f"transactions settled on {tps}")
    finally:
        for consumer in ends.values():
            await consumer.stop()


async def read_all(
    bootstrap: str, topic: str, expect: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - bounds the reading window: part of what the result means
    idle: float = 2.0, stalled: float = 10.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Committed records of `topic` from the beginning: until `expect` are read (then `idle` more seconds
    to catch extras), or until nothing new arrives for `idle` seconds when `expect` is None.

    Short of `expect` with nothing new for `stalled` seconds, the reader starts over with a new consumer (each
    record kept once): after a broker of a cluster was killed and restarted, aiokafka's consumer can stay on a
    stale leader for one partition, its offset lookups refused (NotLeaderForPartition) for ever.

    Without `expect`, the `idle` seconds count from the first fetch answered for every partition (its high watermark
    known), not from the consumer's start: on a loaded machine the offset lookup and the first fetch took longer than
    a short `idle`, and a topic with records was read as empty (CI, three test runs side by side: the backbone scan's
    dead letters, read with `idle=0.3`, 19 topics at once).
    """
    found: dict[tuple[int, int], ConsumerRecord[bytes, bytes]] = {}
    deadline = time.monotonic() + timeout
    while True:
        consumer = clients.consumer(KafkaConnection(bootstrap=bootstrap), topic, client_id="tests",
                                    fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=12 * 1024 * 1024)
        await consumer.start()
        last_new = time.monotonic()
        heard = False
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                before = len(found)
                for records in batch.values():
                    found.update(((r.partition, r.offset), r) for r in records)
                if len(found) > before:
                    last_new = time.monotonic()
                if not heard and _fetched(consumer):  # what that fetch brought is returned by the next getmany
                    heard, last_new = True, time.monotonic()
                reached = expect is not None and len(found) >= expect
                if (reached or (expect is None and heard)) and time.monotonic() - last_new >= idle:
                    return sorted(found.values(), key=lambda r: (r.partition, r.offset))
                if expect is not None and not reached and time.monotonic() - last_new >= stalled:
                    break  # start over: a new consumer, fresh metadata
            else:
                return sorted(found.values(), key=lambda r: (r.partition, r.offset))
        finally:
            await consumer.stop()


def _fetched(consumer: AIOKafkaConsumer) -> bool:
    """Every partition assigned has had a fetch answered (no partition: the topic's metadata says there is none)."""
    return all(consumer.highwater(tp) is not None for tp in consumer.assignment())


_GIVEN: set[int] = set()
_PICK = random.SystemRandom()  # not the `random` module's state, which hypothesis seeds in its tests


def unassigned_ports() -> range:
    """Loopback ports the kernel never picks by itself: below its ephemeral range (net.ipv4.ip_local_port_range), from
    20000, else above it. A port taken from that range (a bind to port 0) can become the source port of any outgoing
    connection between the pick and the bind of the process it is for: CI on 2026-12-05 lost a cluster node that way
    ("node 2 exited") while the other two nodes were connecting to the controllers."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):  # not Linux: the IANA range, which macOS uses
        low, high = 49152, 65535
    if low - 20000 >= 1000:
        ports = range(20000, low)
    elif 65535 - high >= 1000:
        ports = range(high + 1, 65536)
    else:
        return range(1024, 65536)  # an ephemeral range that covers (nearly) everything: nowhere is safe
    return shared(ports, os.environ.get(PORT_SHARE, ""))


def shared(ports: range, share: str) -> range:
    """Share `k/n` of `ports` (the k-th of n equal slices; all of them without one): `make test`'s pytest runs
    (`tests.run`) pick their ports each in its own, else two could pick one port before either binds it."""
    try:
        k, n = map(int, share.split("/"))
    except ValueError:
        return ports
    size = len(ports) // n
    return range(ports.start + k * size, ports.start + (k + 1) * size) if 0 <= k < n else ports


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_run(length: int, attempts: int = 500) -> int:
    """The first of `length` consecutive loopback ports, none listened on now, none given out by this process before,
    all outside the kernel's ephemeral range (`unassigned_ports`); they count as given."""
    ports = unassigned_ports()
    for _ in range(attempts):
        base = _PICK.randrange(ports.start, ports.stop - length + 1)
        run = range(base, base + length)
        if not _GIVEN.intersection(run) and all(_bindable(p) for p in run):
            _GIVEN.update(run)
            return base
    raise RuntimeError(f"no {length} consecutive free ports in {ports.start}-{ports.stop - 1}")


def free_port() -> int:
    """A loopback port nothing listens on now, outside the kernel's ephemeral range (`unassigned_ports`), and never one
    this process was given before: two calls in a row once gave one gateway the same port for its API and its
    /metrics (CI 2026-12-04, refused at start since the settings audit; a bind failure before)."""
    return free_port_run(1)


TEST_DEFAULTS = {"INTAKE_SOURCES_FILE": ""}
"""What a service started by a test gets unless the test says otherwise: intake without a source registry (tests
publish from sources of their own making; the registry's tests name one)."""


def start_service(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m <module>` with the given environment over `TEST_DEFAULTS`, output to `log`."""
    with open(log, "ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", module], env={**os.environ, **TEST_DEFAULTS, **env}, cwd=ROOT,
                                stdout=handle, stderr=subprocess.STDOUT)


def stop_service(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Letter(NamedTuple):
    """A dead letter as it arrived at intake: opened if intake sealed it (ADR 0015, 0026), its original key, value and
    headers, then intake's `dlq.*` ones."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


async def opened_letters(bootstrap: str, namespace: str, records: Sequence[Any]) -> list[Letter]:
    """`records` of commune.dlq.intake with their sealed payloads opened through the key store (test keys from
    the environment, tests/conftest.py); a letter whose key was erased is left out."""
    from services.cli.dlq import opened  # the CLI's own opening: what an operator replaying them sees

    stored = [(r.partition, r.offset, r.key, r.value, list(r.headers)) for r in records]
    letters, unopened, _erased = await opened(KafkaConnection(bootstrap=bootstrap), namespace, stored)
    assert unopened == 0, f"{unopened} dead letters could not be opened"
    return [Letter(*s) for s in letters]


SECURITY_VARIABLES = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
                      "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")


def kafka_env() -> dict[str, str]:
    """The connection settings (TLS, SASL) a Kafka test runs with, for a child process given an environment of its
    own: on the secure broker (`make test`'s default) they are admin's (tests/conftest.py)."""
    return {name: os.environ[name] for name in SECURITY_VARIABLES if name in os.environ}


def kcat_options() -> list[str]:
    """kcat's `-X` options for the same connection (none on PLAINTEXT)."""
    from services.common.acls_apply import librdkafka_config
    from services.common.settings import KafkaConnection

    config = librdkafka_config(KafkaConnection())
    return [arg for k, v in config.items() if k != "bootstrap.servers" for arg in ("-X", f"{k}={v}")]
