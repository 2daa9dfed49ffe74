"""`python -m services.common.topics_cli` (make up, make topics): its arguments, before any broker is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.topics import TOPICS
from services.common import topics_cli
from services.common.acls import SOURCES_FILE
from services.sources.registry import load_registry

pytestmark = pytest.mark.unit


def test_help_is_help_and_asks_no_broker(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` prints the usage and ends (downstream audit: it was read as a sources file's name and the command ran
    against the production topics, reconciling their configs)."""
    monkeypatch.setattr(topics_cli, "KafkaConnection", lambda: pytest.fail("a broker was asked"))
    with pytest.raises(SystemExit) as ended:
        topics_cli.main(["--help"])
    assert ended.value.code == 0 and "--namespace" in capsys.readouterr().out


def test_no_broker_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """No broker on the bootstrap: one line naming it and what starts the local one, exit 1; it was aiokafka's
    traceback (`KafkaConnectionError: Unable to bootstrap`; audit of the front door)."""
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(SystemExit) as ended:
        topics_cli.main(["--namespace", "t"])
    assert ended.value.code == f"topics: no broker answers on 127.0.0.1:{port} (`make up` starts the local one; " \
        "KAFKA_BOOTSTRAP names another)"


def test_the_registry_topics_of_a_namespace_include_each_sources_bound_topics(tmp_path: Path) -> None:
    names = [t.name for t in topics_cli.registry_topics("ns1", SOURCES_FILE)]
    bound = [f for e in load_registry(SOURCES_FILE).sources for f in e.families]
    assert len(names) == len(set(names)) == len(TOPICS) + len(bound)
    assert all(n.startswith("ns1.") for n in names) and any(".src." in n for n in names)



def test_a_sources_file_given_must_be_there_and_the_default_may_be_absent(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped sources path is refused, naming it (it created none of the sources' raw topics and said nothing);
    without one, the checkout's infra/sources.yaml, and an installed package without infra/ creates the registry's."""
    absent = tmp_path / "absent.yaml"
    with pytest.raises(FileNotFoundError):
        topics_cli.registry_topics("", absent)
    monkeypatch.setattr(topics_cli, "DEFAULT_SOURCES", absent)
    assert len(topics_cli.registry_topics("")) == len(TOPICS)
    monkeypatch.setattr(topics_cli, "KafkaConnection", lambda: pytest.fail("a broker was asked"))
    with pytest.raises(SystemExit) as ended:
        topics_cli.main([str(absent)])
    assert ended.value.code == 2


def test_topics_create_refuses_a_sources_file_that_is_not_there(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`commune-bus topics create --sources <mistyped path>`: exit 2 naming the file, no broker asked (it created the
    registry topics alone, "0 topics created", exit 0: audit)."""
    from typer.testing import CliRunner

    from services.cli import main

    asked: list[object] = []

    async def nothing(*args: object) -> list[str]:
        asked.append(args)
        return []

    monkeypatch.setattr(main, "reconcile_configs", nothing)
    monkeypatch.setattr(main, "ensure_topics", nothing)
    absent = tmp_path / "sources-new.yml"
    result = CliRunner().invoke(main.app, ["topics", "create", "--sources", str(absent), "--bootstrap",
                                           "127.0.0.1:1"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--sources': file '{absent}' does not exist" in " ".join(result.output.split())
    assert asked == []
    given = CliRunner().invoke(main.app, ["topics", "create", "--bootstrap", "127.0.0.1:1"], env={"COLUMNS": "300"})
    assert given.exit_code == 0 and len(asked) == 2, given.output
