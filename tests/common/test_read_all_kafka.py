"""The tests' own reader (`tests.kafkatools.read_all`): a short idle window never cuts a read of a topic short."""

from __future__ import annotations

import pytest

from tests.common.conftest import NewTopicOf
from tests.kafkatools import produce, read_all

pytestmark = pytest.mark.kafka


async def test_an_idle_window_shorter_than_the_first_fetch_still_reads_every_record(
        kafka_bootstrap: str, new_topic: NewTopicOf) -> None:
    """The idle window counts from the first fetch answered for every partition: with no window at all, all 120
    records of 12 partitions are still read. Counted from the consumer's start (the old reader), a first fetch slower
    than the first getmany's 200 ms ended the read empty. That happens on a loaded machine only: on an idle one the
    old reader passes this test too, so it holds the reader's promise rather than reproducing the race."""
    topic = await new_topic("read-all", 12)
    sent = await produce(kafka_bootstrap, topic, [(f"k{k}".encode(), f"v{k}".encode(), []) for k in range(120)])
    for _ in range(3):
        records = await read_all(kafka_bootstrap, topic, idle=0.0)
        assert len(records) == sent == 120
