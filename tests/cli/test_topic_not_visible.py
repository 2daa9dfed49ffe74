"""A topic a command must read that this principal cannot describe (no ACL) or that does not exist is said in one
line, exit 1, by `dlq list`, `dlq replay` and `trace`: reading it as "no partitions" said "0 dead letters match",
"replayed 0" (exit 0) or "nothing found" (CLI audit). `dlq`, `notify-dlq`, `tail` and `publish` say which of the two
it is (the describe's error code; a principal without the right: `tests/security/test_cli_rights.py`)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest

from schemas.events import Family
from schemas.topics import CANONICAL, DLQ_INTAKE, DLQ_NOTIFY, DLQ_REPLAYED, NOTIFY_STATUS, RAW, namespaced, scoped
from services.cli.main import main
from services.common.admin import list_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.samples import canonical_dossier

pytestmark = pytest.mark.kafka
HINT = "(check --namespace, or create the topics as admin: commune-bus topics create)"
MISSING = f"does not exist {HINT}"


def said(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`commune-bus *argv`: its exit status and what it wrote to stderr, on one line."""
    monkeypatch.setattr(sys, "argv", ["commune-bus", *argv])
    with pytest.raises(SystemExit) as ended:
        main()
    return int(ended.value.code or 0), " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("command", [["dlq", "list"], ["dlq", "replay"], ["dlq", "replay", "--dry-run"],
                                     ["notify-dlq", "list"]])
def test_dlq_of_a_namespace_without_one_is_one_line_and_exit_1(kafka_bootstrap: str, command: list[str],
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh namespace, no DLQ in it: the DLQ is named as not existing, with how to create it, exit 1 (it said
    "not visible to this principal (no ACL) or does not exist" to the admin, who may see every topic; CLI trial);
    replay writes nothing (not even the replay log)."""
    namespace = "cli" + naming.unique(8)
    status, err = said(monkeypatch, capsys, *command, "--bootstrap", kafka_bootstrap, "--namespace", namespace)
    dlq = scoped(DLQ_NOTIFY if command[0] == "notify-dlq" else DLQ_INTAKE, namespace).name
    assert (status, err) == (1, f"commune-bus: {dlq}: {MISSING}")
    assert scoped(DLQ_REPLAYED, namespace).name not in asyncio.run(list_topics(KafkaConnection(
        bootstrap=kafka_bootstrap)))


def test_trace_where_no_topic_it_reads_is_visible_is_one_line_and_exit_1(kafka_bootstrap: str,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh namespace: every topic trace reads is named as not existing, exit 1 (not "nothing found", which says
    the record is nowhere when nowhere was looked at; nor "none of them visible (no ACL) or exists" to the admin)."""
    namespace = "cli" + naming.unique(8)
    status, err = said(monkeypatch, capsys, "trace", "TL-1", "--bootstrap", kafka_bootstrap, "--namespace", namespace)
    topics = [namespaced(t.name, namespace) for t in (*RAW.values(), *CANONICAL.values())] + [
        scoped(t, namespace).name for t in (DLQ_INTAKE, NOTIFY_STATUS, DLQ_NOTIFY)]
    assert status == 1, err
    assert err.startswith("commune-bus: ") and err.endswith(f": none of them exists {HINT}"), err
    assert sorted(err.removeprefix("commune-bus: ").split(": ")[0].split(", ")) == sorted(topics)
    assert "nothing found" not in err


@pytest.mark.parametrize("command", ["tail", "publish"])
def test_tail_or_publish_on_a_topic_not_there_is_one_line_and_exit_1(kafka_bootstrap: str, command: str,
                                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh namespace, before `topics create`: the topic is named as not existing, exit 1. The clients waited
    40 s for its metadata, logging an error ten times a second, then said UnknownTopicOrPartitionError and to check
    the bootstrap (CLI trial); nothing is created or written."""
    namespace = "cli" + naming.unique(8)
    topic = namespaced(RAW[Family.DOSSIER].name, namespace)
    records = tmp_path / "one.json"
    records.write_bytes(orjson.dumps(canonical_dossier("TNV-1")))
    argv = ["tail", topic, "--idle", "1"] if command == "tail" else ["publish", "--family", "dossier",
                                                                     "--namespace", namespace, str(records)]
    status, err = said(monkeypatch, capsys, *argv, "--bootstrap", kafka_bootstrap)
    said_alone = f"commune-bus: {topic}: {MISSING}"
    assert (status, err) == (1, said_alone)
    assert topic not in asyncio.run(list_topics(KafkaConnection(bootstrap=kafka_bootstrap)))
