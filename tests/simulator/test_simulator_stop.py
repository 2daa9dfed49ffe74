"""`python -m services.simulator` stops on SIGTERM while its broker does not answer (a local black hole: connections
accepted, never answered), and says what it left unsent."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafkatools import ROOT

pytestmark = pytest.mark.unit
STOPS_WITHIN_S = 15.0
"""The producer's stop may take its 10 s deadline (`closing.close_within`); before, the run waited for the broker."""


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A listener on 127.0.0.1 that accepts every connection and never reads or writes a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stopping.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stopping.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_sigterm_while_the_broker_does_not_answer_ends_the_simulator(black_hole: str, tmp_path: Path) -> None:
    """SIGTERM 3 s into a run whose broker accepts connections but never answers: exit 0 within STOPS_WITHIN_S
    (before: it waited out the admin client's and the producer's own time limits, then crashed)."""
    log = tmp_path / "simulator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.simulator", "--bootstrap", black_hole, "--rate", "50",
                                 "--namespace", "blackhole"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        assert proc.poll() is None, log.read_text()
        stopped = time.monotonic()
        proc.terminate()
        proc.wait(STOPS_WITHIN_S + 30)
        took = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"simulator ended {took:.1f} s after SIGTERM, exit {proc.returncode}")
    assert proc.returncode == 0 and took < STOPS_WITHIN_S, log.read_text()[-3000:]
    assert "service.crashed" not in log.read_text()
