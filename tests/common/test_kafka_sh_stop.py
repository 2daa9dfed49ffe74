"""`infra/kafka/kafka.sh stop`, finding its broker not running while the other kind runs, names a command that stops
that one (new-user trial: `make demo` starts the secure broker, and a bare `stop` answered 'not running'); a pid file
naming a live process that is no broker of its own is not taken for one."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


@pytest.fixture
def script(tmp_path: Path) -> Path:
    """A copy of kafka.sh in a tree of its own (it finds its state folders beside itself): the real brokers' pid files
    are never touched."""
    copied = tmp_path / "infra/kafka/kafka.sh"
    copied.parent.mkdir(parents=True)
    shutil.copy2(ROOT / "infra/kafka/kafka.sh", copied)
    return copied


@contextlib.contextmanager
def live(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line ends with `args`."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", *args])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def run(script: Path, secure: str, command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")} | {"KAFKA_SECURE": secure}
    return subprocess.run([str(script), command], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("stopping", "running", "stops_it"), [
    ("0", ".state-secure", "make down"), ("1", ".state", "make down SECURE=0")])
def test_stop_names_a_command_that_stops_the_other_broker(script: Path, stopping: str, running: str,
                                                           stops_it: str) -> None:
    """The hint's `make` command stops the broker that runs: `make down` is the secure one's (SECURE=1 by default), the
    PLAINTEXT one's is `make down SECURE=0` (the hint said `make down` for both)."""
    state = script.parent / running
    state.mkdir()
    with live("kafka.Kafka", str(state / "server.properties")) as stand_in:  # as kafka.sh starts a broker
        (state / "kafka.pid").write_text(f"{stand_in.pid}\n")
        done = run(script, stopping, "stop")
        assert done.returncode == 0, done.stderr
        said = done.stdout
        assert said.startswith("kafka: not running ("), said
        commands = said.split(" or ", 1)[1]
        assert commands.startswith(f"{stops_it}, stops it"), said
        assert stand_in.poll() is None, "the other broker is left running"


@pytest.mark.parametrize("args", [(), ("kafka.Kafka", "/elsewhere/server.properties")], ids=["not-java", "another"])
def test_a_pid_file_naming_another_process_is_no_broker(script: Path, args: tuple[str, ...]) -> None:
    """A pid file kept past a reboot, its pid now another process's (or another state's broker): `status` says not
    running and `stop` leaves that process alone. A live pid was enough: `make down` killed it, and `start` said
    "already running" (audit of the front door)."""
    state = script.parent / ".state"
    state.mkdir()
    with live(*args) as other:
        (state / "kafka.pid").write_text(f"{other.pid}\n")
        assert run(script, "0", "status").returncode != 0
        done = run(script, "0", "stop")
        assert done.returncode == 0 and done.stdout.startswith("kafka: not running"), done
        assert other.poll() is None, "kafka.sh stop killed a process that is no broker of its own"
