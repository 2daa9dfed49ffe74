"""Records whose keys, headers and values carry rich markup, terminal escapes (colours, OSC 8 links), C1 controls,
bidirectional overrides and non-UTF-8 bytes, written to a real broker by a source that may write its raw topic:
every operator command (tail, trace, dlq list/replay) still ends with exit 0 and shows that content as text,
escaped, with no control character of the record's reaching the terminal; tail hides applicants' personal data
unless asked."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from typer.testing import CliRunner, Result

from schemas.deadletter import DeadLetterContext, Reason
from schemas.limits import CONTROL
from schemas.notification import ChannelKind, NotificationKind, NotificationStatus, Outcome
from schemas.replay import DLQ_REPLAYED
from schemas.topics import DLQ_INTAKE, DLQ_NOTIFY, EVENTS_DOSSIER, NOTIFY_STATUS, RAW_DOSSIER, scoped
from services.cli.main import app
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.kafkatools import produce
from tests.samples import portal_dossier

pytestmark = pytest.mark.kafka

LINK = "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
HOSTILE = (f"[/oops] [link=http://evil.example]here[/link] {LINK} \x1b[31mred\x1b[0m \u202eevil\u202c \u2066x\u2069 "
           "\x9b1m \x7f")
"""Markup that closes what was never opened, a rich link, an OSC 8 link, SGR colour, bidi overrides and isolates,
a C1 CSI and DEL."""
SHOWN = ["[/oops]", "[link=http://evil.example]here[/link]", r"\x1b]8;;http://evil.example/\x1b\click me",
         r"\x1b[31mred\x1b[0m", r"\u202eevil\u202c", r"\u2066x\u2069", r"\x9b1m", r"\x7f"]
"""How HOSTILE reads on the terminal: as it was written, each control character as its escape."""
UNSAFE = re.compile(f"[{CONTROL}\ud800-\udfff]")
APPLICANT = ("Nguyễn Thị Lan", "008123456789", "0912345678")
"""`portal_dossier`'s personal data."""


class Hostile:
    def __init__(self, bootstrap: str, namespace: str) -> None:
        self.bootstrap, self.namespace = bootstrap, namespace
        self.code = f"AUDQ-{namespace}"
        self.event_id = f"evt-{namespace}"

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(app, [*args, "--bootstrap", self.bootstrap, "--namespace", self.namespace],
                                  env={"COLUMNS": "2000"})


@pytest.fixture(scope="module")
def hostile(kafka_bootstrap: str) -> Iterator[Hostile]:
    """A namespace whose raw topic, intake DLQ, canonical topic, notify status topic and notify DLQ each hold hostile
    records about one dossier."""
    h = Hostile(kafka_bootstrap, "cli" + naming.unique(8))
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    specs = [scoped(t, h.namespace) for t in (RAW_DOSSIER, EVENTS_DOSSIER, DLQ_INTAKE, NOTIFY_STATUS, DLQ_NOTIFY,
                                              DLQ_REPLAYED)]
    asyncio.run(ensure_topics(conn, specs))
    raw, events, dlq, status, dlq_notify = (s.name for s in specs[:5])
    dossier = orjson.dumps(portal_dossier(h.code, TenTTHC=HOSTILE))
    hostile_headers = [("source", HOSTILE.encode()), ("commune-code", b"02269"), (HOSTILE, b"\xff\xfe[/h]")]
    letter = DeadLetterContext(reason=Reason.MISSING_COMMUNE_HEADER, field=HOSTILE, message=HOSTILE, source_topic=raw,
                               source_partition=0, source_offset=0, rejected_at=HOSTILE).headers()
    notified = NotificationStatus(notification_id=HOSTILE, event_id=h.event_id, rule=HOSTILE,
                                  kind=NotificationKind.DOSSIER_ACCEPTED, channel=ChannelKind.SMS,
                                  recipient_ref=HOSTILE, commune="02269", outcome=Outcome.FAILED, attempt=1,
                                  at=datetime.now(UTC), reason=HOSTILE)
    for topic, records in [
        (raw, [(b"[/k]\x1b[2J\xff", dossier, hostile_headers), (b"[/k2]", b"\x1b[31m[/v]\xff not json", [])]),
        (dlq, [(b"[/k]", dossier, [*letter, ("source", HOSTILE.encode())])]),
        (events, [(b"02269", b"{}", [("ce_id", h.event_id.encode()), ("ce_subject", h.code.encode()),
                                     ("ce_type", HOSTILE.encode()), ("ce_source", HOSTILE.encode())])]),
        (status, [(b"02269", notified.model_dump_json().encode(), [])]),
        (dlq_notify, [(b"02269", orjson.dumps({"event_id": h.event_id, "notification_id": HOSTILE}),
                       [("dlq.reason", HOSTILE.encode())])]),
    ]:
        asyncio.run(produce(kafka_bootstrap, topic, records))
    yield h


def assert_shown(result: Result, *shown: str) -> None:
    """Exit 0, no control character from a record in the output, and each of `shown` in it."""
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert not UNSAFE.findall(result.output.replace("\n", "")), UNSAFE.findall(result.output.replace("\n", ""))
    for piece in shown:
        assert piece in result.output, piece


IN_JSON = ["[/oops]", "[link=http://evil.example]here[/link]", r"\u001b]8;;http://evil.example/", r"\u202eevil\u202c",
           r"\u2066x\u2069", r"\u009b1m", r"\u007f"]
"""How HOSTILE reads inside a JSON value: every control character as a JSON escape (the value stays exact JSON)."""


@pytest.mark.parametrize("topic, records, shown", [
    ("commune.raw.dossier", 2, [*SHOWN, *IN_JSON, r"key=[/k]\x1b[2J\xff", r"\xff\xfe[/h]"]),
    ("commune.dlq.intake", 1, SHOWN), ("commune.events.dossier", 1, SHOWN), ("commune.notify.status", 1, IN_JSON),
    ("commune.dlq.notify", 1, SHOWN),
])
def test_tail_shows_hostile_records_as_text(hostile: Hostile, topic: str, records: int, shown: list[str]) -> None:
    """`tail --from-beginning --show-personal-data` of each topic (before: the key `[/k]` crashed it with MarkupError
    at the same record every time; escapes in header names and values and in JSON values reached the terminal raw);
    non-UTF-8 bytes read as their escapes. By default (such keys and headers masked: their length only) no control
    character reaches the terminal either."""
    args = ("tail", topic, "--from-beginning", "--max", str(records), "--idle", "5")  # the records the topic holds
    assert_shown(hostile.cli(*args, "--show-personal-data"), *shown)
    assert_shown(hostile.cli(*args))


def test_tail_masks_applicants_personal_data_unless_asked(hostile: Hostile) -> None:
    """A raw portal dossier's ChuHoSo, SoGiayToChuHoSo and SoDienThoaiChuHoSo are masked by default (before:
    printed in clear), and a value that is not JSON (nothing to mask in it) is withheld; --show-personal-data shows
    both, still escaped."""
    masked = hostile.cli("tail", "commune.raw.dossier", "--from-beginning", "--max", "2", "--idle", "5")
    assert masked.exit_code == 0, masked.output
    assert not [v for v in APPLICANT if v in masked.output]
    assert "N. T. L." in masked.output and "09******78" in masked.output
    assert "[/v]" not in masked.output and "not JSON" in masked.output
    shown = hostile.cli("tail", "commune.raw.dossier", "--from-beginning", "--max", "2", "--idle", "5",
                        "--show-personal-data")
    assert_shown(shown, *APPLICANT, r"\x1b[31m[/v]\xff not json")


def test_trace_shows_hostile_steps_as_text(hostile: Hostile) -> None:
    """`trace` of the dossier: its raw record (source `[/oops]...`), dead letter, canonical event, notification and
    notification dead letter (before: MarkupError, exit 1)."""
    result = hostile.cli("trace", hostile.code)
    assert_shown(result, *SHOWN)
    assert all(stage in result.output for stage in ("raw", "dead letter", "canonical", "notification"))


def test_trace_of_markup_that_finds_nothing_says_so(hostile: Hostile) -> None:
    """A query that is markup itself and finds nothing: "nothing found", exit 1, not a MarkupError."""
    result = hostile.cli("trace", "[/q]")
    assert result.exit_code == 1 and "nothing found for '[/q]'" in result.output, result.output


def test_dlq_list_shows_hostile_dead_letters_as_text(hostile: Hostile) -> None:
    """`dlq list`: the table shows source, field and rejected-at as text (before: MarkupError on `[/oops]`)."""
    assert_shown(hostile.cli("dlq", "list"), *SHOWN)


def test_dlq_list_json_is_exact_json_without_raw_controls(hostile: Hostile) -> None:
    """`dlq list --json`: each line parses back to the very strings written, and the C1, DEL and bidi characters
    travel as JSON escapes (before: written raw, only C0 escaped)."""
    result = hostile.cli("dlq", "list", "--json")
    assert result.exit_code == 0, result.output
    assert not UNSAFE.findall(result.output.replace("\n", ""))
    rows = [orjson.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [(r["source"], r["field"], r["message"], r["rejected_at"]) for r in rows] == [(HOSTILE,) * 4]


@pytest.mark.parametrize("dry_run", [["--dry-run"], []])
def test_dlq_replay_of_hostile_dead_letters_ends_normally(hostile: Hostile, dry_run: list[str]) -> None:
    """`dlq replay` (dry run, then for real): counts only, exit 0 (it printed no record content before either:
    kept as a guard)."""
    assert_shown(hostile.cli("dlq", "replay", *dry_run))
