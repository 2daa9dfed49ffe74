"""Variant (d) of the intake benchmark: a plain faust-streaming agent doing intake's validation.

Run as `python -m bench.faust_agent worker -l warning` with BENCH_RAW, BENCH_OUT, BENCH_KEYS_OUT,
BENCH_APP, KAFKA_BOOTSTRAP and BENCH_WEB_PORT in the environment. BENCH_OUT gets one record an input record (its
canonical record or the record itself), BENCH_KEYS_OUT the data-key records (as intake writes them to a topic of
their own), so the rate read on BENCH_OUT counts input records.
"""

from __future__ import annotations

import os
import tempfile

import faust

from schemas import wire
from schemas.events import Family
from schemas.topics import PARTITIONS
from services.common.clients import faust_options
from services.common.settings import KafkaConnection
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from services.intake.settings import IntakeSettings
from services.privacy.settings import PrivacySettings
from services.privacy.store import key_messages

app = faust.App(
    os.environ.get("BENCH_APP", "bench-faust"),
    **faust_options(KafkaConnection()),  # the broker and, when KAFKA_* say so, TLS/SASL credentials
    store="memory://",
    topic_partitions=PARTITIONS,
    web_host="127.0.0.1",
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6099")),
    consumer_auto_offset_reset="earliest",
    datadir=tempfile.mkdtemp(prefix="bench-faust-"),  # faust's default, `<app id>-data`, is left in the working tree
    producer_max_request_size=11 * 1024 * 1024,
)
raw = app.topic(os.environ.get("BENCH_RAW", "bench.raw"), key_type=bytes, value_type=bytes, value_serializer="raw")
out = app.topic(os.environ.get("BENCH_OUT", "bench.out"), key_type=bytes, value_type=bytes, value_serializer="raw")
keys = app.topic(os.environ.get("BENCH_KEYS_OUT", "bench.out.keys"), key_type=bytes, value_type=bytes,
                 value_serializer="raw")


KEYRING = PrivacySettings().keyring() if PrivacySettings().configured and IntakeSettings().seal_personal_data else None
"""Seals applicants as intake does (ADR 0015) when PRIVACY_* is set (`make bench` sets it)."""


@app.agent(raw)
async def validate(stream: faust.StreamT) -> None:
    async for event in stream.events():
        headers = list(event.message.headers or [])
        outcome = normalise(Family.DOSSIER, event.value, headers, keyring=KEYRING)
        if isinstance(outcome, Accepted):
            rec = wire.encode(outcome.event)
            await out.send(key=rec.key, value=rec.value, headers=rec.headers)
            for _, key, value in key_messages(list(outcome.keys), ""):  # the data keys, as intake writes them
                await keys.send(key=key, value=value)
                KEYRING.apply(key, value)  # confirmed, as intake's key store confirms it: written once, not each use
        else:
            await out.send(key=event.key, value=event.value, headers=headers)


if __name__ == "__main__":
    app.main()
