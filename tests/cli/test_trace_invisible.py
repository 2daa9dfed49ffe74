"""`trace` names the topics it could not read by why, from the describe's error code, as `tail` and `dlq` do: those
that do not exist, those this principal may not describe, those the broker did not describe. It said "not visible to
this principal (no ACL) or absent" for all of them (Kafka replaced by fakes of the two calls)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from services.cli import trace as trace_command
from services.cli.main import main
from services.cli.trace import Timeline
from services.cli.tracer import Step
from services.common import logging as cli_logging

pytestmark = pytest.mark.unit
STEP = Step(at_ms=1_700_000_000_000, stage="canonical", where="commune.events.dossier[0]@1", what="received",
            trace="t" * 32)


def traced(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], codes: dict[str, int],
           read: int) -> tuple[int, str]:
    """`commune-bus trace TL-1` when the topics `codes` names were not visible, described with those error codes."""

    async def timeline(*_: Any) -> Timeline:
        return Timeline([STEP] if read else [], invisible=tuple(codes), read=read)

    async def topic_errors(_conn: Any, names: Any) -> dict[str, int]:
        return {name: codes[name] for name in names}

    monkeypatch.setattr(trace_command, "trace_timeline", timeline)
    monkeypatch.setattr(trace_command, "topic_errors", topic_errors)
    monkeypatch.setattr(sys, "argv", ["commune-bus", "trace", "TL-1"])
    monkeypatch.setattr(cli_logging, "configure", lambda *_, **__: None)
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as ended:
        main()
    return int(ended.value.code or 0), " ".join(capsys.readouterr().err.split())


def test_topics_not_read_are_named_by_why(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = traced(monkeypatch, capsys, {"a.raw": 3, "b.raw": 29, "c.dlq": 5, "d.raw": 3}, read=4)
    assert status == 0, err
    assert "not read (they do not exist; check --namespace): a.raw, d.raw; records only they hold" in err
    assert "not read (this principal may not describe them (no ACL)): b.raw; records only they hold" in err
    assert "not read (the broker did not describe them): c.dlq; records only they hold" in err
    assert "or absent" not in err


@pytest.mark.parametrize(("codes", "said"), [
    ({"a.raw": 3, "b.raw": 3}, "commune-bus: a.raw, b.raw: none of them exists (check --namespace"),
    ({"a.raw": 29}, "commune-bus: Kafka: [Error 29] TopicAuthorizationFailedError: a.raw (this principal may not"),
    ({"a.raw": 3, "b.raw": 29}, "commune-bus: a.raw, b.raw: none of them visible to this principal (no ACL) or "
                                "exists"),
])
def test_nothing_read_is_one_line_saying_why(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             codes: dict[str, int], said: str) -> None:
    """No topic read: all missing, all forbidden (the rights hint), or both (the two together, as before); exit 1."""
    status, err = traced(monkeypatch, capsys, codes, read=0)
    assert status == 1 and err.startswith(said), err
