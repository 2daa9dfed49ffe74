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


def test_the_registry_topics_of_a_namespace_include_each_sources_bound_topics(tmp_path: Path) -> None:
    names = [t.name for t in topics_cli.registry_topics("ns1", SOURCES_FILE)]
    bound = [f for e in load_registry(SOURCES_FILE).sources for f in e.families]
    assert len(names) == len(set(names)) == len(TOPICS) + len(bound)
    assert all(n.startswith("ns1.") for n in names) and any(".src." in n for n in names)
    assert len(topics_cli.registry_topics("", tmp_path / "absent.yaml")) == len(TOPICS)
