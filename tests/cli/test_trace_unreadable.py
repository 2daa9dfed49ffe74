"""`trace` as a principal that may not read some topics (an operator and the raw topics): each such topic is named
once by the trace's own note, and aiokafka's fetcher warning for every fetch of it does not reach the terminal
(a fresh-clone walkthrough saw 18 such lines above one trace)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from services.cli import trace
from services.common.settings import KafkaConnection

pytestmark = pytest.mark.unit
FETCHER = logging.getLogger("aiokafka.consumer.fetcher")


def test_the_fetchers_not_authorized_warnings_are_dropped_while_reading_and_only_then(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def counts(_conn: KafkaConnection, topics: Any) -> dict[str, int]:
        return {t: 1 for t in topics}

    async def read_to_end(_conn: KafkaConnection, topic: str, *_args: Any, **_kwargs: Any) -> None:
        if topic.startswith("commune.raw."):
            for _ in range(3):  # as aiokafka does, fetch after fetch, before the consumer raises
                FETCHER.warning("Not authorized to read from topic %s.", topic)
            raise TopicAuthorizationFailedError()
        FETCHER.warning("Fetch offset out of range for %s", topic)  # any other warning still shows

    monkeypatch.setattr(trace, "partition_counts", counts)
    monkeypatch.setattr(trace, "read_to_end", read_to_end)
    unreadable: list[str] = []
    with caplog.at_level(logging.WARNING, logger=FETCHER.name):
        asyncio.run(trace._read(KafkaConnection(), ["commune.raw.dossier", "commune.events.dossier"],
                                lambda _r: None, None, unreadable, []))
        FETCHER.warning("Not authorized to read from topic %s.", "after")  # the filter is gone once read
    messages = [r.getMessage() for r in caplog.records]
    assert unreadable == ["commune.raw.dossier"]
    assert messages == ["Fetch offset out of range for commune.events.dossier",
                        "Not authorized to read from topic after."]
