"""The exactly-once floor with another client: librdkafka (confluent-kafka), the same loop as `bench.eos_forward`.

Consume a batch, produce it as it is inside one transaction with its input offsets, commit. Tells
whether the exactly-once floor is the client's (aiokafka is Python) or the broker's transactions.
Back-offs as intake's (1 ms, not librdkafka's 100 ms); `consume` returns after 2 ms at most (its
timeout is a wait for the whole batch). Env as `bench.eos_forward`; SIGTERM stops it.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from confluent_kafka import Consumer, Producer

from services.common.acls_apply import librdkafka_config
from services.common.settings import KafkaConnection


def main() -> None:
    bootstrap, raw, out, app = (os.environ[k] for k in ("KAFKA_BOOTSTRAP", "BENCH_RAW", "BENCH_OUT", "BENCH_APP"))
    stopping = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    connection = librdkafka_config(KafkaConnection(bootstrap=bootstrap))  # TLS/SASL as KAFKA_* say
    producer = Producer({**connection, "transactional.id": f"{app}.rd", "linger.ms": 0,
                         "retry.backoff.ms": 1, "retry.backoff.max.ms": 5})
    consumer = Consumer({**connection, "group.id": app, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
    consumer.subscribe([raw])
    producer.init_transactions()
    try:
        while not stopping:
            messages = [m for m in consumer.consume(num_messages=1000, timeout=0.002) if not m.error()]
            if not messages:
                continue
            producer.begin_transaction()
            for m in messages:
                producer.produce(out, m.value(), key=m.key(), headers=m.headers())
            positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]  # fetched ones
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata())
            producer.commit_transaction()
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
