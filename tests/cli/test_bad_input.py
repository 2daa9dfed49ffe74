"""The CLI on ordinary bad input: a file that cannot be read is one line and exit 2, a line of a file that is not
JSON is published as it is and counted, and a dead letter this CLI cannot read is counted while the others are
listed and replayed; never a traceback (Kafka replaced by in-memory fakes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from typer.testing import CliRunner, Result

from schemas.deadletter import DeadLetterContext, Reason
from schemas.personal import SEALED_KEY_HEADER, SEALED_SUBJECT_HEADER
from services.cli import dlq, dlq_commands, kafka_io, replaying
from services.cli.main import app
from services.common import logging as cli_logging
from services.common.admin import TopicConfigError
from services.privacy.crypto import PrivacyError
from tests.keys_env import PRIVACY_ENV
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**PRIVACY_ENV, "COLUMNS": "300"})


@pytest.mark.parametrize("name, why", [("missing.json", "No such file or directory"), ("a-folder", "Is a directory")])
def test_a_file_that_cannot_be_read_is_one_line(tmp_path: Path, name: str, why: str) -> None:
    """validate and publish on a missing file or a directory: exit 2 and one line naming the file and why."""
    (tmp_path / "a-folder").mkdir()
    for command in (["validate"], ["publish", "-f", "dossier"]):
        result = run(*command, str(tmp_path / name))
        assert result.exit_code == 2, result.output
        assert result.output.strip() == f"{tmp_path / name}: cannot be read ({why})"


@pytest.mark.parametrize("name, body", [("many.ndjson", b'{"a": 1}\n' * 100_001),
                                        ("many.json", b"[" + b",".join([b"{}"] * 100_001) + b"]")])
def test_a_file_of_too_many_records_says_to_split_it(tmp_path: Path, name: str, body: bytes) -> None:
    """validate and publish on a file of 100,001 records: exit 2 and one line saying to split it; it said "the limit
    is 100000 per request", the gateway's words, to someone who had sent no request (CLI trial)."""
    (tmp_path / name).write_bytes(body)
    for command in (["validate"], ["publish", "-f", "dossier"]):
        result = run(*command, str(tmp_path / name))
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (f"{tmp_path / name}: more than 100000 records, the most a command takes: "
                                         "split it into files of at most 100000 (NDJSON: split -l 100000) and give "
                                         "each in turn")


async def there(_conn: Any, _topic: str) -> None:
    """`kafka_io.visible` faked with the rest of the Kafka shell: the topic is there."""

def test_a_line_that_is_not_json_is_published_as_it_is_and_counted(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`publish` of NDJSON with a `{not json` line: every line goes to the raw topic (that one keyed by --commune,
    intake dead-letters it as not_json), and the summary counts it."""
    sent: list[kafka_io.Record] = []

    async def publish(_conn: Any, _topic: str, records: list[kafka_io.Record], progress: Any) -> int:
        sent.extend(records)
        progress(len(records))
        return len(records)

    monkeypatch.setattr(kafka_io, "publish", publish)
    monkeypatch.setattr(kafka_io, "visible", there)
    path = tmp_path / "events.ndjson"
    path.write_bytes(orjson.dumps(canonical_dossier()) + b"\n{not json\n")
    result = run("publish", str(path), "-f", "dossier", "--commune", "02269")
    assert result.exit_code == 0, result.output
    assert [(key, value) for key, value, _ in sent] == [(b"02269", orjson.dumps(canonical_dossier())),
                                                        (b"02269", b"{not json")]
    assert "2 records acknowledged by commune.raw.dossier (1 not JSON: intake dead-letters them as not_json)" \
        in result.output


def test_a_publish_interrupted_says_how_many_records_were_acknowledged(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while `publish` waits for the broker: exit 130 and one line saying how many records were acknowledged,
    the others perhaps written; it ended with no word of what was written (CLI trial)."""

    async def publish(_conn: Any, _topic: str, records: list[kafka_io.Record], progress: Any) -> int:
        progress(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(kafka_io, "publish", publish)
    monkeypatch.setattr(kafka_io, "visible", there)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"{}\n{}\n{}\n")
    result = run("publish", str(path), "-f", "dossier")
    assert result.exit_code == 130, result.output
    assert "interrupted: 1 of 3 records acknowledged by commune.raw.dossier, the others perhaps written" in \
        " ".join(result.output.split())


GOOD = DeadLetterContext(reason=Reason.MISSING_COMMUNE_HEADER, field="commune-code", message="m",
                         source_topic="commune.raw.dossier", source_partition=2, source_offset=7,
                         rejected_at="2025-11-03T01:00:00+00:00").headers()
SEALED = [(SEALED_SUBJECT_HEADER, b"dlq:2025-11-03"), (SEALED_KEY_HEADER, b"k1")]
LETTERS = [
    (0, 1, None, b"{}", [("dlq.reason", b"a_reason_from_a_newer_intake"), *GOOD[1:]]),
    (0, 2, None, b"{}", []),  # no dlq.* headers at all
    (0, 3, None, b"{}", GOOD),
    (1, 4, None, b"\x00" * 40, [*GOOD[:4], ("dlq.source.partition", b"two"), *GOOD[5:], *SEALED]),
    (1, 5, None, b"\x00" * 40, [*GOOD, *SEALED]),  # its key is gone: left out, counted as erased
    (2, 6, None, b"{}", [*GOOD, ("ce_source", b"/citizens/001099012345/lan.nguyen@example.vn")]),
]


@pytest.fixture
def dlq_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    """The DLQ holds the six `LETTERS`: 0:3 and 2:6 readable, 1:5 erased, three this CLI cannot read; none
    replayed."""

    async def read_into(_conn: Any, _topic: str, apply: Callable[[dlq.Stored], None], _since: Any = None) -> None:
        for p, o, k, v, h in LETTERS:
            apply((p, o, k, v, list(h)))

    async def replayed_keys(*_: Any) -> set[bytes]:
        return set()

    class KeyStore:  # the key topic, read to its end: it holds no key
        def __init__(self, *_: Any, **__: Any) -> None: ...

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

    async def partition_counts(_conn: Any, names: list[str]) -> dict[str, int]:  # the key topics exist
        return dict.fromkeys(names, 1)

    monkeypatch.setattr(dlq, "read_into", read_into)
    monkeypatch.setattr(dlq, "partition_counts", partition_counts)
    monkeypatch.setattr(dlq, "keys_written", lambda *_: asyncio.sleep(0, True))
    monkeypatch.setattr(dlq, "replayed_keys", replayed_keys)
    monkeypatch.setattr(dlq, "KeyStore", KeyStore)
    monkeypatch.setattr(dlq_commands, "topic_rights", lambda _conn, topics: asyncio.sleep(0, dict.fromkeys(topics,
                                                                                                          "write")))


@pytest.mark.usefixtures("dlq_topic")
def test_an_unreadable_dead_letter_is_counted_and_the_others_are_listed() -> None:
    """A reason from a newer intake, no dlq.* headers, a sealed letter with a malformed dlq.source.partition:
    `dlq list` lists the readable one and counts the three (before: KeyError/ValueError, nothing listed), and says
    that one is erased (before: left out without a word)."""
    result = run("dlq", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [row["dlq"] for row in rows] == ["0:3", "2:6"]
    assert "2 dead letters in commune.dlq.intake match, 0 of them already replayed; 3 unreadable, not listed" \
        in result.output
    assert "; 1 erased or expired, unreadable" in " ".join(result.output.split())


@pytest.mark.usefixtures("dlq_topic")
@pytest.mark.parametrize("filters, erased", [
    (["--reason", "internal_error"], ""),
    (["--topic", "commune.raw.announcement"], ""),
    (["--since", "2025-11-04"], ""),
    (["--until", "2025-11-02"], ""),
    (["--reason", "missing_commune_header", "--since", "2025-11-03"], "; 1 erased or expired, unreadable"),
    (["--source", "/communes/02269/*"], "; 1 erased or expired (of any source: --source cannot be checked on them, "
                                        "sealed), unreadable"),
])
def test_the_erased_count_is_of_the_letters_matching_the_filters_their_clear_headers_tell(
        filters: list[str], erased: str) -> None:
    """An erased letter (a missing_commune_header of commune.raw.dossier, 2025-11-03) is counted only when its clear
    reason, topic and time match; a source, sealed, cannot be checked, and the count says so. Before, every erased
    letter was counted whatever the filters: `--reason internal_error` said "1 erased", an errand for nothing."""
    for command in (["list"], ["replay", "--dry-run"]):
        said = " ".join(run("dlq", *command, *filters).output.split())
        assert (erased in said) if erased else ("erased" not in said), said


@pytest.mark.usefixtures("dlq_topic")
def test_a_replay_given_up_on_a_silent_broker_says_what_may_be_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dlq replay` whose transaction the broker did not end (`Unacknowledged`): exit 1, one line saying what was
    replayed, what may have been and that running it again replays only what the log does not hold; no traceback."""

    async def replay(*_: Any) -> list[Any]:
        raise kafka_io.Unacknowledged("no acknowledgement for 60 s: 0 of 2 dead letters replayed, the next 2 perhaps")

    monkeypatch.setattr(replaying, "replay", replay)
    result = run("dlq", "replay")
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "replay stopped: Unacknowledged: no acknowledgement for 60 s: 0 of 2 dead letters replayed, the next 2 " \
        "perhaps; run the command again once the broker answers: it replays only the dead letters the replay log " \
        "does not hold" in said
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("dlq_topic")
def test_a_replay_interrupted_says_how_many_were_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during `dlq replay`: exit 130 and one line saying how many dead letters were replayed and what to do,
    as `publish` says what it wrote; it ended with no word of what it did (audit)."""

    async def replay(_conn: Any, _ns: str, todo: list[Any], *args: Any) -> list[Any]:
        args[3](1)  # (progress) one transaction of one letter committed, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(replaying, "replay", replay)
    result = run("dlq", "replay")
    assert result.exit_code == 130, result.output
    said = " ".join(result.output.split())
    assert "interrupted: 1 of 2 dead letters replayed; the transaction under way, if any, was aborted (or committed, " \
        "if its commit was already asked for): run the command again to replay the rest" in said
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("dlq_topic")
def test_an_unreadable_dead_letter_does_not_stop_a_replay() -> None:
    """`dlq replay --dry-run` would replay the readable one, says how many it cannot read and how many are erased."""
    result = run("dlq", "replay", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would replay 2 of 2 matching dead letters; 3 unreadable, not listed" in result.output
    assert "; 1 erased or expired, unreadable" in " ".join(result.output.split())


@pytest.mark.usefixtures("dlq_topic")
@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_a_citizens_number_or_e_mail_in_a_producers_source_is_masked_unless_asked(as_json: list[str]) -> None:
    """A producer named its source after a citizen (`/citizens/<CCCD>/<e-mail>`): `dlq list` shows it masked, as
    `tail` does (before: in clear, after the applicant's erasure too); `--show-personal-data` shows it."""
    masked = run("dlq", "list", *as_json)
    assert masked.exit_code == 0, masked.output
    assert "001099012345" not in masked.output and "lan.nguyen@example.vn" not in masked.output
    assert "/citizens/00********45/" in masked.output
    shown = run("dlq", "list", *as_json, "--show-personal-data")
    assert shown.exit_code == 0, shown.output
    assert "/citizens/001099012345/lan.nguyen@example.vn" in shown.output


@pytest.mark.parametrize("failure, status, said", [
    (TopicAuthorizationFailedError("commune.dlq.replayed"), 1,
     "commune-bus: Kafka: [Error 29] TopicAuthorizationFailedError: "
     "commune.dlq.replayed (this principal may not do that: `topics create`, reading the raw topics"),
    (KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]"), 1,
     "commune-bus: Kafka: KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 1)] "
     "(check --bootstrap (KAFKA_BOOTSTRAP)"),
    (PrivacyError("no KEK: set PRIVACY_KEK or PRIVACY_KEK_FILE"),
     2, "commune-bus: no KEK: set PRIVACY_KEK or PRIVACY_KEK_FILE (sealed records are opened with the key store"),
    (TopicConfigError("topics configured unlike schemas/topics.py, which no service may run on: commune.dlq.replayed: "
                      "cleanup.policy is delete, the registry says compact"), 1,
     "commune-bus: topics configured unlike schemas/topics.py, which no service may run on: commune.dlq.replayed"),
])
def test_no_rights_or_no_keys_is_one_line_and_an_exit_status(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str], failure: Exception,
                                                             status: int, said: str) -> None:
    """What an operator meets every day (a topic its principal may not read, no broker, no PRIVACY_* keys, a topic
    configured unlike the registry): the `commune-bus` command says it in one line with what to check (before: a rich
    traceback of 60 lines and more), the error's name once (it was `KafkaConnectionError: KafkaConnectionError: ...`,
    aiokafka's message naming it again)."""
    import sys

    from services.cli.main import main

    async def dead_letters(*_: Any) -> Any:
        raise failure

    monkeypatch.setattr(dlq, "dead_letters", dead_letters)
    monkeypatch.setattr(sys, "argv", ["commune-bus", "dlq", "list"])
    # `main` configures logging for the process (standard error, from WARNING): not this test process's, which later
    # tests capture at every level (CI: a later `capture_logs` saw nothing)
    monkeypatch.setattr(cli_logging, "configure", lambda *_, **__: None)
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == status
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith(said) and "Traceback" not in err, err


def test_a_publish_the_broker_stopped_answering_says_so_not_to_check_the_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`publish` given up on a broker gone silent (`Unacknowledged`): one line saying what was acknowledged and to run
    it again once the broker answers, exit 1; it said to check the bootstrap and credentials, which had worked."""
    import sys

    from services.cli.main import main

    async def publish(*_: Any) -> int:
        raise kafka_io.Unacknowledged("no acknowledgement for 60 s: 1 of 2 records acknowledged, the others perhaps "
                                      "written")

    events = tmp_path / "events.ndjson"
    events.write_bytes(orjson.dumps(canonical_dossier("silent-1")) + b"\n")
    monkeypatch.setattr(kafka_io, "publish", publish)
    monkeypatch.setattr(kafka_io, "visible", there)
    monkeypatch.setattr(sys, "argv", ["commune-bus", "publish", "--family", "dossier", str(events)])
    monkeypatch.setattr(cli_logging, "configure", lambda *_, **__: None)
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "Unacknowledged: no acknowledgement for 60 s: 1 of 2 records acknowledged, the others perhaps written " \
        "(the broker stopped answering: once it answers, run the command again (intake publishes each event id " \
        "once))" in err, err
    assert "KAFKA_BOOTSTRAP" not in err and "Traceback" not in err


def test_a_tls_file_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    """`KAFKA_SSL_CAFILE` naming no file: one line naming it, exit 1 (it was a ~100-line FileNotFoundError traceback
    from the client's TLS set-up; CLI audit)."""
    missing = tmp_path / "no-such-ca.crt"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(missing)}
    done = subprocess.run([sys.executable, "-c", "from services.cli.main import main; main()", "tail",
                           "commune.events.dossier", "--max", "1", "--idle", "1"], cwd=Path(__file__).parents[2],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    assert " ".join(done.stderr.split()) == (f"commune-bus: cannot read {missing}: No such file or directory (check "
                                             "the KAFKA_SSL_* files)")


@pytest.mark.parametrize("option", [["--max", "-1"], ["--idle", "-5"], ["--idle", "nan"], ["--idle", "inf"],
                                    ["--since", "yesterday"], ["--since", "2h", "--from-beginning"]])
def test_tail_refuses_a_negative_or_endless_limit_before_connecting(option: list[str]) -> None:
    """`tail --max -1` and `--idle -5` showed nothing and exited 0 ("0 records"), `--idle nan` and `inf` followed the
    topic for ever: each is a usage error (exit 2) naming the option, before any broker is asked (CLI trial). So are
    a `--since` of no form it reads, and one with `--from-beginning`."""
    result = run("tail", "commune.events.dossier", "--bootstrap", "127.0.0.1:1", *option)
    assert result.exit_code == 2, result.output
    assert option[0] in result.output


@pytest.mark.usefixtures("dlq_topic")
def test_a_replay_into_a_topic_this_principal_may_not_write_says_who_may(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator replaying dead letters of a topic it may not write (a source's own raw topic): they are not sent,
    the last line names the topic and how many, and the admin command with the same filters (times as instants, a
    personal number in a --set-header not printed: a placeholder) and only that topic; exit 1. Before, the replay
    stopped at the first such letter with every other one unreplayed (user walkthrough)."""
    sent: list[Any] = []

    async def replay(_conn: Any, _ns: str, todo: list[Any], *_: Any) -> list[Any]:
        sent.extend(todo)
        return list(todo)

    monkeypatch.setattr(replaying, "replay", replay)
    monkeypatch.setattr(dlq_commands, "topic_rights", lambda _conn, topics: asyncio.sleep(0, dict.fromkeys(topics,
                                                                                                          "no_write")))
    result = run("dlq", "replay", "--reason", "missing_commune_header", "--since", "2025-11-03T07:00",
                 "--set-header", "commune-code=02269", "--set-header", "x-id=001099012345", "--namespace", "")
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert sent == []
    assert "replayed 0 dead letters; 0 matching were already replayed" in said
    assert "2 not replayed, left as they are: this principal may not write the raw topics they go back to: " \
        "commune.raw.dossier (2)" in said
    assert said.endswith(": put what you gave in place of <your --set-header x-id> (it may hold a personal number or "
                         "e-mail, not printed; as printed, the command is refused): commune-bus dlq replay --reason "
                         "missing_commune_header --since 2025-11-03T00:00:00+00:00 --topic commune.raw.dossier "
                         "--set-header commune-code=02269 --set-header '<your --set-header x-id>'"), said
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("dlq_topic")
def test_a_dry_run_tells_the_split_or_that_rights_are_checked_by_the_real_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--dry-run` says what the real run would leave to the admin (the broker's rights, KIP-430), or, from a broker
    that cannot tell them, that write rights are checked only by the real run; it wrote nothing either way."""
    monkeypatch.setattr(dlq_commands, "topic_rights", lambda _conn, topics: asyncio.sleep(0, dict.fromkeys(topics,
                                                                                                          "no_write")))
    said = " ".join(run("dlq", "replay", "--dry-run").output.split())
    assert said.startswith("would replay 0 of 2 matching dead letters") and "; 2 left to the admin: " in said, said
    monkeypatch.setattr(dlq_commands, "topic_rights", lambda *_: asyncio.sleep(0, None))
    said = " ".join(run("dlq", "replay", "--dry-run").output.split())
    assert "would replay 2 of 2 matching dead letters" in said and "write rights are checked only by the real run" \
        in said, said


@pytest.mark.parametrize("option", ["--commune", "--source"])
def test_an_option_that_is_not_utf8_is_a_usage_error(tmp_path: Path, option: str) -> None:
    """`--commune $'\\xff'` or `--source $'/x\\xff'` (a byte the shell passes as a lone surrogate): exit 2, the option
    named; it was a traceback (UnicodeEncodeError) before any broker was asked (audit)."""
    path = tmp_path / "one.json"
    path.write_bytes(b'{"MaHoSo": "HS-1"}')
    commands = [["validate", str(path)], ["publish", "-f", "dossier", str(path)]]
    for command in commands if option == "--commune" else commands[1:]:
        result = run(*command, option, "0226\udcff")
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}': not valid UTF-8" in result.output
