"""The admin command `dlq replay` prints for letters it left: copied as printed, it replays the same letters with the
same fixes, or, where a value it will not print stands in a placeholder, it is refused; never another replay."""

from __future__ import annotations

import asyncio
import shlex
from datetime import UTC, datetime
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from schemas.deadletter import Reason
from services.cli import dlq, dlq_commands
from services.cli.deadletters import Filters
from services.cli.main import app
from services.cli.masking import names_masked
from services.cli.replay_split import admin_command

pytestmark = pytest.mark.unit
TOPIC = "commune.raw.dossier.src.thuong-lam-one-stop"


def parsed(command: str) -> tuple[Filters, dict[str, str], str]:
    """The filters, fixes and namespace `dlq replay` takes from `command` (as the shell splits it)."""
    args = shlex.split(command)
    assert args[:3] == ["commune-bus", "dlq", "replay"], command
    replay = typer.main.get_command(dlq_commands.app).commands["replay"]  # type: ignore[attr-defined]
    p = replay.make_context("replay", args[3:]).params
    return (dlq_commands._filters(p["reason"], p["source"], p["since"], p["until"], p["topic"]),
            dlq_commands._set_headers(p["set_header"]), p["namespace"])


def test_a_command_printed_whole_parses_back_to_the_same_filters_and_fixes() -> None:
    """Reasons, a source prefix, times, topics, fixes with quotes and spaces, a namespace: all as they were given."""
    filters = Filters(frozenset({Reason.MISSING_COMMUNE_HEADER, Reason.NOT_JSON}), "/communes/02269/one-stop*",
                      datetime(2026, 12, 1, 1, 0, tzinfo=UTC), datetime(2026, 12, 2, 7, 30, tzinfo=UTC))
    fixes = {"commune-code": "02269", "x-note": "it's a 'fix' = yes", "ce_time": "2026-12-01T08:00:00+07:00"}
    command = admin_command(filters, fixes, "ns1", [TOPIC, "commune.raw.dossier"])
    assert command.startswith("commune-bus dlq replay "), command
    assert parsed(command) == (Filters(filters.reasons, filters.source, filters.since, filters.until,
                                       frozenset({TOPIC, "commune.raw.dossier"})), fixes, "ns1")


@pytest.mark.parametrize("filters, fixes, withheld", [
    (Filters(frozenset({Reason.UNAUTHORISED_SOURCE}), "/communes/02269/kiosk-100200300"), {},
     "/communes/02269/kiosk-100200300"),
    (Filters(frozenset({Reason.INVALID_FIELD})),
     {"ce_traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "commune-code": "02269"},
     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
])
def test_a_value_masking_would_change_is_not_printed_and_the_command_as_printed_is_refused(
        monkeypatch: pytest.MonkeyPatch, filters: Filters, fixes: dict[str, str], withheld: str) -> None:
    """A personal-looking number in a --source or a --set-header: a placeholder in its place, a note saying so, and
    the command copied as printed is a usage error before any broker is asked. It printed the value masked: copied as
    told, the source matched nothing ("replayed 0", exit 0), the header would spend the one replay corrupted."""
    said = admin_command(filters, fixes, "", [TOPIC])
    note, _, command = said.partition(": commune-bus ")
    command = "commune-bus " + command
    assert "<your --" in note and "refused" in note, said
    assert withheld not in said and names_masked(withheld) not in said, said
    assert "commune-code=02269" in command or not fixes  # what masking leaves as it is is printed as it is
    asked: list[object] = []

    async def dead_letters(*args: Any) -> Any:
        asked.append(args)
        return await asyncio.sleep(0, dlq.Listing("commune.dlq.intake", [], set(), 0, 0))

    monkeypatch.setattr(dlq, "dead_letters", dead_letters)
    result = CliRunner().invoke(app, [*shlex.split(command)[1:], "--bootstrap", "127.0.0.1:1"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "placeholder" in result.output and asked == []
