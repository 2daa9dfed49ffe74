"""What the secure broker (ADR 0014) costs a client, measured side by side with the PLAINTEXT one.

    .venv/bin/python -m bench.secure_cost [ROUNDS]

Needs both local brokers (`infra/kafka/kafka.sh start`, `KAFKA_SECURE=1 infra/kafka/kafka.sh start`); runs as
the secure broker's `admin`. Not a `bench_*` module: `make bench` runs on one broker, this needs both. Each
round measures every case on PLAINTEXT then on SASL_SSL, interleaved, so the machine's load hits both alike;
it prints the medians and the SASL_SSL / PLAINTEXT ratio. The parts of a handshake are timed apart too:
building an SSLContext (the CA loaded) and the client's SCRAM key derivation (PBKDF2 at the user's iterations).
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from schemas.topics import Kind, TopicSpec
from services.common import admin as admin_ops
from services.common import clients
from services.common.settings import KafkaConnection

ROOT = Path(__file__).resolve().parent.parent
SECURE = KafkaConnection.from_env_file(ROOT / "infra/kafka/secrets/admin.env")
PLAIN = KafkaConnection(bootstrap="127.0.0.1:9092", security_protocol="PLAINTEXT", sasl_mechanism=None,
                        sasl_username=None, sasl_password=None, ssl_cafile=None)
TXN_RECORDS = 200

Case = Callable[[KafkaConnection, str], Awaitable[None]]


async def producer_start_send_stop(conn: KafkaConnection, topic: str) -> None:
    producer = clients.producer(conn, client_id="bench-secure")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"v", key=b"k")
    finally:
        await producer.stop()


async def consumer_read_stop(conn: KafkaConnection, topic: str) -> None:
    consumer = clients.consumer(conn, topic, client_id="bench-secure")
    await consumer.start()
    try:
        while not await consumer.getmany(timeout_ms=200):
            pass
    finally:
        await consumer.stop()


async def group_consumer_read_stop(conn: KafkaConnection, topic: str) -> None:
    consumer = clients.consumer(conn, topic, client_id="bench-secure", group_id=f"bench-secure-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        while not await consumer.getmany(timeout_ms=200):
            pass
    finally:
        await consumer.stop()


async def admin_list(conn: KafkaConnection, topic: str) -> None:
    await admin_ops.list_topics(conn)


async def transactional_loop(conn: KafkaConnection, topic: str) -> None:
    """A transactional producer's start, TXN_RECORDS transactions of one record each, stop."""
    producer = clients.transactional_producer(conn, transactional_id=f"bench-secure-{uuid.uuid4().hex[:8]}",
                                              client_id="bench-secure")
    await producer.start()
    try:
        for i in range(TXN_RECORDS):
            async with producer.transaction():
                await producer.send_and_wait(topic, b"v" * 512, key=str(i).encode())
    finally:
        await producer.stop()


CASES: dict[str, Case] = {
    "producer start+send+stop": producer_start_send_stop,
    "consumer (no group) start+read+stop": consumer_read_stop,
    "group consumer start+read+stop": group_consumer_read_stop,
    "admin list_topics": admin_list,
    f"transactional producer, {TXN_RECORDS} one-record txns": transactional_loop,
}


def ssl_context_ms(rounds: int = 200) -> float:
    began = time.perf_counter()
    for _ in range(rounds):
        clients.connection_options(SECURE)
    return (time.perf_counter() - began) * 1000 / rounds


def pbkdf2_ms(iterations: int, rounds: int = 50) -> float:
    began = time.perf_counter()
    for _ in range(rounds):
        hashlib.pbkdf2_hmac("sha512", b"x" * 48, b"salt" * 4, iterations)
    return (time.perf_counter() - began) * 1000 / rounds


async def run(rounds: int) -> None:
    topic = f"bench-secure-{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(name=topic, kind=Kind.INTERNAL, key="none", description="secure_cost benchmark", partitions=1)
    for conn in (PLAIN, SECURE):
        await admin_ops.ensure_topics(conn, [spec])
    timings: dict[tuple[str, str], list[float]] = {}
    print(f"topic {topic} on both brokers; {rounds} rounds", flush=True)
    try:
        for round_ in range(rounds):
            print(f"round {round_ + 1}", flush=True)
            for name, case in CASES.items():
                for label, conn in (("PLAINTEXT", PLAIN), ("SASL_SSL", SECURE)):
                    began = time.perf_counter()
                    await asyncio.wait_for(case(conn, topic), 120)
                    timings.setdefault((name, label), []).append((time.perf_counter() - began) * 1000)
    finally:
        for conn in (PLAIN, SECURE):
            await admin_ops.delete_topics(conn, [topic])
    print(f"{'case':48} {'PLAINTEXT ms':>13} {'SASL_SSL ms':>12} {'ratio':>6}   (medians of {rounds} rounds)")
    for name in CASES:
        plain, secure = (statistics.median(timings[(name, label)]) for label in ("PLAINTEXT", "SASL_SSL"))
        print(f"{name:48} {plain:13.1f} {secure:12.1f} {secure / plain:6.2f}")
    print(f"connection_options(SASL_SSL) (SSLContext, CA loaded): {ssl_context_ms():.2f} ms per call")
    for iterations in (4096, 8192):
        print(f"PBKDF2-HMAC-SHA512 at {iterations} iterations (client side of SCRAM): {pbkdf2_ms(iterations):.2f} ms")


def main() -> None:
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10))


if __name__ == "__main__":
    main()
