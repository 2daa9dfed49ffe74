"""The replay log names each dead letter by its position and the digest of its bytes: once the DLQ topic is
recreated (what a TopicLayoutError says to do, or a restore), a new letter at a replayed position is replayed, and a
letter replayed is never replayed twice, whether its log entry has the digest or is of the first form, the position
alone (written by a CLI before this change). Kafka replaced by an in-memory broker holding the records, whose one
replay writer commits or drops a transaction whole."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.deadletter import DeadLetterContext, Reason
from schemas.notification import ChannelKind
from services.cli import dlq, dlq_commands, notify_dlq, replaying
from services.cli.main import app
from services.notify import deadletters, rules
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier

pytestmark = pytest.mark.unit
INTAKE_DLQ, NOTIFY_DLQ, LOG = "commune.dlq.intake", "commune.dlq.notify", "commune.dlq.replayed"
RAW, REPLAYS = "commune.raw.dossier", "commune.notify.replays"


class Broker:
    """Topics of one partition each, as lists of (partition, offset, key, value, headers)."""

    def __init__(self) -> None:
        self.topics: dict[str, list[dlq.Stored]] = defaultdict(list)

    def append(self, topic: str, key: bytes | None, value: bytes | None, headers: list[Any]) -> None:
        self.topics[topic].append((0, len(self.topics[topic]), key, value, list(headers)))

    def recreate(self, topic: str) -> None:
        """Deleted and created again: empty, its offsets from 0 again."""
        self.topics[topic] = []

    async def read_into(self, _conn: Any, topic: str, apply: Callable[[dlq.Stored], None], _since: Any = None, *,
                        absent_ok: bool = False) -> None:
        for stored in self.topics[topic]:
            apply(stored)


class Writer:
    """The replay writer: its sends reach the topics when their transaction commits."""

    def __init__(self, broker: Broker) -> None:
        self.broker, self.pending = broker, list[tuple[str, Any, Any, Any]]()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.pending = []
        yield
        for topic, key, value, headers in self.pending:
            self.broker.append(topic, key, value, headers)

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None,
                   headers: list[Any] | None = None) -> asyncio.Future[None]:
        self.pending.append((topic, key, value, headers or []))
        sent = asyncio.get_running_loop().create_future()
        sent.set_result(None)
        return sent


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    kafka = Broker()
    for name in ("PRIVACY_KEK", "PRIVACY_KEK_FILE"):  # no sealed letters here: no key store to read
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dlq, "read_into", kafka.read_into)
    monkeypatch.setattr(notify_dlq, "read_into", kafka.read_into)
    monkeypatch.setattr(notify_dlq, "partition_counts", lambda _conn, names: asyncio.sleep(0, dict.fromkeys(names, 1)))
    monkeypatch.setattr(replaying, "ensure_topics", lambda *_: asyncio.sleep(0, []))
    monkeypatch.setattr(replaying.clients, "transactional_producer", lambda *_, **__: Writer(kafka))
    monkeypatch.setattr(dlq_commands, "topic_rights", lambda _conn, topics: asyncio.sleep(0, dict.fromkeys(topics,
                                                                                                          "write")))
    return kafka


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, [*args], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def intake_letter(kafka: Broker, value: bytes, rejected_at: str) -> None:
    context = DeadLetterContext(reason=Reason.MISSING_COMMUNE_HEADER, field="commune-code", message="m",
                                source_topic=RAW, source_partition=0, source_offset=0, rejected_at=rejected_at)
    kafka.append(INTAKE_DLQ, b"02269", value, [("ce_source", b"/communes/02269/one-stop"), *context.headers()])


def listed(*args: str) -> list[bool]:
    result = CliRunner().invoke(app, [*args, "--json"], env={"COLUMNS": "300"})
    return [json.loads(line)["replayed"] for line in result.output.splitlines() if line.startswith("{")]


def test_a_new_intake_letter_at_a_replayed_position_of_a_recreated_dlq_is_replayed(broker: Broker) -> None:
    """Letter A at 0:0 replayed; the DLQ recreated; letter B at 0:0 lists as not replayed and is replayed. Before,
    B listed as replayed and `dlq replay` said "replayed 0 ...; 1 matching were already replayed" (operator
    audit)."""
    intake_letter(broker, b'{"letter": "A"}', "2026-12-01T01:00:00+00:00")
    assert "replayed 1 dead letter;" in cli("dlq", "replay")
    assert "replayed 0 dead letters; 1 matching were already replayed" in cli("dlq", "replay")  # never twice
    broker.recreate(INTAKE_DLQ)
    intake_letter(broker, b'{"letter": "B"}', "2026-12-06T02:00:00+00:00")
    assert listed("dlq", "list") == [False]
    assert "replayed 1 dead letter; 0 matching were already replayed" in cli("dlq", "replay")
    assert [value for *_, value, _ in broker.topics[RAW]] == [b'{"letter": "A"}', b'{"letter": "B"}']
    assert listed("dlq", "list") == [True]
    assert "replayed 0 dead letters; 1 matching were already replayed" in cli("dlq", "replay")


def test_a_letter_logged_by_its_position_alone_is_still_not_replayed_again(broker: Broker) -> None:
    """A log entry of the first form (`<dlq topic>:<partition>:<offset>`, an older CLI's) keeps its letter replayed."""
    intake_letter(broker, b'{"letter": "A"}', "2026-12-01T01:00:00+00:00")
    broker.append(LOG, f"{INTAKE_DLQ}:0:0".encode(), RAW.encode(), [])
    assert listed("dlq", "list") == [True]
    assert "replayed 0 dead letters; 1 matching were already replayed" in cli("dlq", "replay")
    assert broker.topics[RAW] == []


def notify_letter(kafka: Broker, event_id: str) -> None:
    hooks = Registry.model_validate({"subscribers": [{"name": "prov-08", "url": "https://example.gov.vn/h",
                                                      "secret": "s"}]})
    request = next(r for r in rules.for_event(dossier(event_id), directory(), hooks)
                   if r.channel is ChannelKind.WEBHOOK)
    value, omitted = deadletters.bounded(request)
    kafka.append(NOTIFY_DLQ, request.commune.encode(), value,
                 [("dlq.reason", b"http_401"), ("dlq.attempts", b"1"),
                  ("dlq.rejected.at", datetime.now(UTC).isoformat().encode()), *omitted])


def test_a_new_notify_letter_at_a_replayed_position_of_a_recreated_dlq_is_replayed(broker: Broker) -> None:
    """The same log serves `notify-dlq replay`: after the recreation, the new letter at 0:0 is sent again, once; a
    first-form entry keeps its letter replayed."""
    notify_letter(broker, "before-recreate")
    assert "replayed 1 dead letter;" in cli("notify-dlq", "replay")
    assert "replayed 0 dead letters; 1 matching were already replayed" in cli("notify-dlq", "replay")
    broker.recreate(NOTIFY_DLQ)
    notify_letter(broker, "after-recreate")
    assert listed("notify-dlq", "list") == [False]
    assert "replayed 1 dead letter;" in cli("notify-dlq", "replay")
    assert "replayed 0 dead letters; 1 matching were already replayed" in cli("notify-dlq", "replay")
    assert len(broker.topics[REPLAYS]) == 2
    broker.recreate(LOG)
    broker.append(LOG, f"{NOTIFY_DLQ}:0:0".encode(), REPLAYS.encode(), [])
    assert listed("notify-dlq", "list") == [True]
    assert "replayed 0 dead letters; 1 matching were already replayed" in cli("notify-dlq", "replay")


def test_tail_shows_a_replay_log_key_of_either_form() -> None:
    """`tail commune.dlq.replayed` shows its keys (ours, naming nobody), the first form and the one with a digest."""
    from services.cli.masking import shown_key

    for key in (f"{INTAKE_DLQ}:0:17", f"{INTAKE_DLQ}:0:17:{'ab' * 16}"):
        assert shown_key(key.encode()) == key
