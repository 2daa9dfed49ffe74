"""`commune-bus tail --since`: the records timestamped from then on, on every partition, as `dlq list --since`
reads dead letters. An operator looking into failures that already happened (the runbooks' `tail
commune.notify.status`) saw only the records that came after the command started, or with `--from-beginning`
everything the topic held."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from typer.testing import CliRunner

from schemas.topics import NOTIFY_STATUS, scoped
from services.cli.main import app
from services.common import clients
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming

pytestmark = pytest.mark.kafka
HOUR_MS = 3_600_000


async def written(bootstrap: str, topic: str) -> None:
    """Three records three hours old and two ten minutes old, over several partitions (keys)."""
    producer = clients.producer(KafkaConnection(bootstrap=bootstrap), client_id="tests")
    await producer.start()
    try:
        now = int(time.time() * 1000)
        for n, at in enumerate([now - 3 * HOUR_MS] * 3 + [now - HOUR_MS // 6] * 2):
            await producer.send_and_wait(topic, b'{"n": %d}' % n, key=b"%05d" % (n * 7), timestamp_ms=at)
    finally:
        await producer.stop()


@pytest.mark.parametrize(("since", "records"), [("1h", 2), ("4h", 5), ("5m", 0)])
def test_tail_since_shows_the_records_timestamped_from_then_on(kafka_bootstrap: str, since: str, records: int) -> None:
    namespace = "cli" + naming.unique(8)
    topic = scoped(NOTIFY_STATUS, namespace)  # records keep their producers' timestamps (raw topics: the broker's)
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [topic]))
    asyncio.run(written(kafka_bootstrap, topic.name))
    result = CliRunner().invoke(app, ["tail", "commune.notify.status", "--since", since, "--idle", "2", "--bootstrap",
                                      kafka_bootstrap, "--namespace", namespace], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert len(re.findall(rf"{re.escape(topic.name)} \[\d+:\d+\]", result.output)) == records
    assert f"{records} records from {topic.name}" in result.output
