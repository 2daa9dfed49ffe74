"""`infra/kafka/kafka.sh stop`, finding its broker not running while the other kind runs, names a command that stops
that one (new-user trial: `make demo` starts the secure broker, and a bare `stop` answered 'not running')."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


@pytest.fixture
def copy(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A copy of kafka.sh in a tree of its own (it finds its state folders beside itself), and a live process to stand
    for a running broker; the real brokers' pid files are never touched."""
    script = tmp_path / "infra/kafka/kafka.sh"
    script.parent.mkdir(parents=True)
    shutil.copy2(ROOT / "infra/kafka/kafka.sh", script)
    stand_in = subprocess.Popen(["sleep", "300"])
    try:
        yield script, stand_in
    finally:
        stand_in.kill()
        stand_in.wait()


@pytest.mark.parametrize(("stopping", "running", "stops_it"), [
    ("0", ".state-secure", "make down"), ("1", ".state", "make down SECURE=0")])
def test_stop_names_a_command_that_stops_the_other_broker(copy: tuple[Path, subprocess.Popen[bytes]], stopping: str,
                                                           running: str, stops_it: str) -> None:
    """The hint's `make` command stops the broker that runs: `make down` is the secure one's (SECURE=1 by default), the
    PLAINTEXT one's is `make down SECURE=0` (the hint said `make down` for both)."""
    script, stand_in = copy
    state = script.parent / running
    state.mkdir()
    (state / "kafka.pid").write_text(f"{stand_in.pid}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")} | {"KAFKA_SECURE": stopping}
    said = subprocess.run([str(script), "stop"], env=env, capture_output=True, text=True, timeout=30, check=True).stdout
    assert said.startswith("kafka: not running ("), said
    commands = said.split(" or ", 1)[1]
    assert commands.startswith(f"{stops_it}, stops it"), said
    assert stand_in.poll() is None, "the other broker is left running"
