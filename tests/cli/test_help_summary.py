"""`commune-bus --help` begins with a summary of the commands: it named neither `erase` nor `keys` (runbooks audit,
2026-12-06). Every command is in it now, and a command added later must be too."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.core import TyperGroup

import services.cli.main
from services.cli.main import app

pytestmark = pytest.mark.unit


def command_paths(command: object, prefix: str = "") -> set[str]:
    """`publish`, `dlq list`, ...: every command that runs something, by what one types."""
    if isinstance(command, TyperGroup):
        return {path for name, sub in command.commands.items() for path in command_paths(sub, f"{prefix}{name} ")}
    return {prefix.strip()}


def summarised(doc: str) -> set[str]:
    """The commands the summary names: each `group a|b` as `group a` and `group b`."""
    named = set()
    for item in re.findall(r"`([a-z][a-z |-]*)`", doc):
        head, _, subs = item.rpartition(" ")
        named |= {f"{head} {sub}".strip() for sub in subs.split("|")}
    return named


def test_the_summary_names_every_command() -> None:
    paths = command_paths(typer.main.get_command(app))
    assert {"erase", "keys rewrap", "dlq replay", "validate"} <= paths
    doc = services.cli.main.__doc__ or ""
    assert paths - summarised(doc) == set()


def test_a_command_left_out_of_the_summary_is_found() -> None:
    doc = "Offline: `validate`. Against Kafka: `publish`, `dlq list`."
    assert summarised(doc) == {"validate", "publish", "dlq list"}
    assert {"dlq replay", "erase"} & summarised(doc) == set()
