"""What the Kafka client costs intake a record: aiokafka against librdkafka, the same loop, side by side.

    make up   # or any broker KAFKA_* points at (TLS/SASL too)
    .venv/bin/python -m bench.client_loop [ROUNDS]

Not a `bench_*` module (`make bench` does not run it): it asks how far issue 11's "intake ≥ 5× faust with
sealing" could move by changing the client alone. The same records (`bench_intake`'s simulated dossier traffic,
`BENCH_INTAKE_EVENTS`) are consumed and forwarded by bench_intake's loop (a) on aiokafka and by the same loop on
confluent-kafka (librdkafka: batch `consume`, `produce`, one `flush`), interleaved each round; then both once with
intake's shared work (`bench_intake.validator`: normalise, seal, encode; variant (b)). Printed: events/s and the
process's CPU time per record (user + system: the client's own work, the broker's apart), and their ratios.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Consumer, Producer

from bench import bench_intake as b
from services.common.acls_apply import librdkafka_config


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rd_loop(raw: str, out: str, transform: b.Transform | None) -> tuple[float, float]:
    """Loop (a) or (b) on librdkafka: events/s and CPU µs a record, from the first record read to the last acked."""
    conf = librdkafka_config(b.CONNECTION)
    producer = Producer({**conf, "linger.ms": 5, "enable.idempotence": True})
    consumer = Consumer({**conf, "group.id": f"bench-client-loop-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 20})
    consumer.subscribe([raw])
    done, started, cpu0 = 0, 0.0, 0.0
    try:
        while done < b.N:
            messages = consumer.consume(num_messages=1000, timeout=0.2)
            if messages and not started:
                started, cpu0 = time.perf_counter(), cpu_s()
            for m in messages:
                if m.error():
                    continue
                if transform is None:
                    producer.produce(out, m.value(), key=m.key(), headers=m.headers())
                else:
                    for k, v, h in transform(m.value(), list(m.headers() or [])):
                        producer.produce(out, v, key=k or m.key(), headers=h)
                done += 1
            producer.poll(0)
        producer.flush()
        return b.N / (time.perf_counter() - started), (cpu_s() - cpu0) / b.N * 1e6
    finally:
        consumer.close()


async def aio_loop(raw: str, out: str, transform: b.Transform | None) -> tuple[float, float]:
    cpu0 = cpu_s()
    rate = await b.forward_loop(raw, out, transform)
    return rate, (cpu_s() - cpu0) / b.N * 1e6


async def main(rounds: int) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = [f"bench.client-loop.{tag}.{x}" for x in ("raw", "a", "rd", "b", "rdb")]
    admin = AIOKafkaAdminClient(**b.OPTIONS)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, b.PARTITIONS, 1) for t in topics])
        await b.fill(topics[0], b.raw_records(b.N, seed=5))
        print(f"{b.N:,} simulated dossier records, {b.PARTITIONS} partitions; CPU is this process's", flush=True)
        for i in range(rounds):
            a, a_cpu = await aio_loop(topics[0], topics[1], None)
            r, r_cpu = rd_loop(topics[0], topics[2], None)
            print(f"round {i + 1}, no parsing: aiokafka {a:,.0f} events/s, {a_cpu:.1f} µs CPU a record | librdkafka "
                  f"{r:,.0f} events/s, {r_cpu:.1f} µs | {r / a:.1f}x the rate, {a_cpu / r_cpu:.1f}x less CPU",
                  flush=True)
        bb, b_cpu = await aio_loop(topics[0], topics[3], b.validator(b.new_keyring()))
        rb, rb_cpu = rd_loop(topics[0], topics[4], b.validator(b.new_keyring()))
        print(f"with intake's shared work (normalise, seal, encode): aiokafka {bb:,.0f} events/s, {b_cpu:.1f} µs | "
              f"librdkafka {rb:,.0f} events/s, {rb_cpu:.1f} µs | {rb / bb:.1f}x", flush=True)
    finally:
        await admin.delete_topics(topics)
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
