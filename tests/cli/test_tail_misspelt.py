"""`tail` of a mistyped topic name: a principal without an ACL for a name is refused whether or not the topic exists,
so the rights hint sent an operator who had typed `commune.events.dosier` to the admin (walkthrough, 2026-12-05).
The closest registry name is said instead; an unknown name far from all of them keeps the refusal and its hint."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from services.cli import kafka_io
from services.cli import main as cli_main
from services.common import logging as cli_logging

pytestmark = pytest.mark.unit


def tailed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`commune-bus tail ARGS` against a broker that refuses to describe the topic: exit status and stderr."""

    async def refused(_conn: Any, topic: str, *_: Any) -> int:
        raise TopicAuthorizationFailedError(topic)

    monkeypatch.setattr(kafka_io, "tail", refused)
    monkeypatch.setattr(sys, "argv", ["commune-bus", "tail", *args])
    monkeypatch.setattr(cli_logging, "configure", lambda *_, **__: None)  # the process's, not this test's
    with pytest.raises(SystemExit) as ended:
        cli_main.main()
    return int(ended.value.code or 0), " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(("args", "meant"), [
    (["commune.events.dosier"], "commune.events.dossier"),
    (["commune.notify.statuss"], "commune.notify.status"),
    (["staging.commune.events.dosier", "--namespace", "staging"], "staging.commune.events.dossier"),
])
def test_a_mistyped_topic_is_said_with_the_name_meant(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], args: list[str],
                                                      meant: str) -> None:
    status, err = tailed(monkeypatch, capsys, *args)
    assert status == 1 and f"did you mean {meant}?" in err and "admin" not in err, err


@pytest.mark.parametrize("topic", ["commune.events.dossier", "partner.feed"])
def test_a_registry_topic_or_a_far_name_keeps_the_refusal_and_its_rights_hint(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], topic: str) -> None:
    status, err = tailed(monkeypatch, capsys, topic)
    assert status == 1 and "TopicAuthorizationFailedError" in err and "did you mean" not in err, err
