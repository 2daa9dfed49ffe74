"""`dlq replay` leaves duplicates (duplicate_event) out unless asked for by reason, and says so, with why and how to
replay them, in the dry run and the run; it counted them as "already replayed" (operator audit)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.deadletter import DeadLetterContext, Reason
from schemas.replay import letter_digest, replay_key
from services.cli import dlq, dlq_commands, replaying
from services.cli.main import app

pytestmark = pytest.mark.unit
DLQ = "commune.dlq.intake"


def stored(offset: int, reason: Reason) -> dlq.Stored:
    context = DeadLetterContext(reason=reason, field="id", message="m", source_topic="commune.raw.dossier",
                                source_partition=0, source_offset=offset, rejected_at="2026-12-01T01:00:00+00:00")
    return 0, offset, b"02269", b"{}", [("ce_source", b"/communes/02269/one-stop"), *context.headers()]


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The DLQ holds a duplicate (0:1), a letter replayed before (0:2) and one not yet replayed (0:3); what a replay
    writes is gathered in the list returned."""
    sent: list[Any] = []

    async def read_into(_conn: Any, _topic: str, apply: Callable[[dlq.Stored], None], _since: Any = None) -> None:
        for s in (stored(1, Reason.DUPLICATE_EVENT), stored(2, Reason.NOT_JSON), stored(3, Reason.MISSING_FIELD)):
            apply(s)

    async def replayed_keys(*_: Any) -> set[bytes]:
        return {replay_key(DLQ, 0, 2, letter_digest(*stored(2, Reason.NOT_JSON)[2:]))}

    async def replay(_conn: Any, _ns: str, todo: list[Any], *_: Any) -> list[Any]:
        sent.extend(todo)
        return list(todo)

    for name in ("PRIVACY_KEK", "PRIVACY_KEK_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dlq, "read_into", read_into)
    monkeypatch.setattr(dlq, "replayed_keys", replayed_keys)
    monkeypatch.setattr(replaying, "replay", replay)
    monkeypatch.setattr(dlq_commands, "topic_rights", lambda _conn, topics: asyncio.sleep(0, dict.fromkeys(topics,
                                                                                                          "write")))
    return sent


def said(*args: str) -> str:
    result = CliRunner().invoke(app, ["dlq", "replay", "--source", "/communes/02269/*", *args],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


WHY = ("1 duplicate (duplicate_event) left out, not replayed: the source sent the event again and its first copy was "
       "published; one replayed past intake's 7-day de-duplication window would be published and notified a second "
       "time (give --reason duplicate_event to replay them)")


def test_a_duplicate_is_said_left_out_not_already_replayed(written: list[Any]) -> None:
    """The dry run and the run count the duplicate apart, with why and how to replay it; "already replayed" counts
    only the letter the replay log holds. Before: "would replay 1 of 3" without a reason, then "2 matching were
    already replayed"."""
    assert f"would replay 1 of 3 matching dead letters; 1 already replayed; {WHY}" in said("--dry-run")
    assert f"replayed 1 dead letter; 1 matching were already replayed; {WHY}" in said()
    assert [d.position for d in written] == ["0:3"]


def test_a_duplicate_asked_for_by_reason_is_replayed(written: list[Any]) -> None:
    """--reason duplicate_event replays it; nothing is said left out."""
    out = said("--reason", "duplicate_event")
    assert "replayed 1 dead letter; 0 matching were already replayed" in out and "left out" not in out, out
    assert [d.position for d in written] == ["0:1"]
