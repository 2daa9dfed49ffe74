"""A bootstrap address where something accepts connections and says nothing (a frozen broker, another program on
the port, a firewall dropping packets): the command says so in one line after `REPLY_WAIT_S`, exit 1. It waited the
Kafka client's request timeout, 40 s without a word, then said "Unable to bootstrap" (standing item of the CLI
trial). Real sockets on loopback, no broker."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli import options
from services.common.probe import answer

pytestmark = pytest.mark.unit
ROOT = Path(__file__).parents[2]


@pytest.fixture
def silent() -> Iterator[int]:
    """A port whose listener never accepts: the kernel completes each connection (the backlog) and nothing answers,
    as for a broker process that is stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.fixture
def closed() -> int:
    """A port nothing listens on: a connection there is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`commune-bus <args>` in a process of its own, with a 1 s wait for a reply (10 s by default)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(ROOT), "KAFKA_BOOTSTRAP": bootstrap,
           "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    code = "import services.cli.options as o; o.REPLY_WAIT_S = 1.0; from services.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("args", [["dlq", "list"], ["tail", "commune.events.dossier", "--max", "1"],
                                  ["trace", "TL-1"]])
def test_a_silent_bootstrap_address_is_said_in_one_line(silent: int, args: list[str]) -> None:
    done = command(f"127.0.0.1:{silent}", *args)
    assert done.returncode == 1, done.stderr[-2000:]
    assert " ".join(done.stderr.split()) == (
        f"commune-bus: Kafka: nothing answered at 127.0.0.1:{silent} within 1 s: something accepts the connection "
        "there and says nothing (a broker frozen or overloaded, another program on that port, a firewall dropping "
        "packets); check --bootstrap (KAFKA_BOOTSTRAP)")


def test_a_refused_address_is_left_to_the_client(closed: int) -> None:
    """Nothing listening: the client's own 'Unable to bootstrap' at once, with its hint, as before."""
    done = command(f"127.0.0.1:{closed}", "dlq", "list")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Unable to bootstrap" in done.stderr and "nothing answered" not in done.stderr, done.stderr[-2000:]


def test_the_three_answers(silent: int, closed: int) -> None:
    """A reply (here a hang-up), silence, and nothing to reach are told apart."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]

        async def three() -> tuple[bool | None, ...]:
            replied = asyncio.create_task(answer("127.0.0.1", port, timeout_s=5.0))
            conn, _ = await asyncio.get_running_loop().sock_accept(s)
            conn.close()  # a hang-up is an answer
            return (await replied, await answer("127.0.0.1", silent, timeout_s=0.5),
                    await answer("127.0.0.1", closed, timeout_s=5.0))

        s.setblocking(False)
        assert asyncio.run(three()) == (True, False, None)


@pytest.mark.parametrize("silent_first", [True, False])
def test_one_silent_address_among_answering_ones_holds_nothing(monkeypatch: pytest.MonkeyPatch, silent: int,
                                                              silent_first: bool) -> None:
    """A cluster's bootstrap with one broker frozen: the command goes on as soon as another answers (it waited for
    the silent one's REPLY_WAIT_S on top, every command, during the very outage operators look into; review)."""
    monkeypatch.setattr(options, "REPLY_WAIT_S", 3600.0)
    with socket.socket() as replying:
        replying.bind(("127.0.0.1", 0))
        replying.listen(4)
        replying.settimeout(60)
        port = replying.getsockname()[1]

        def hang_up() -> None:
            conn, _ = replying.accept()
            conn.close()  # a hang-up is an answer

        answering = threading.Thread(target=hang_up, daemon=True)
        answering.start()
        pair = [f"127.0.0.1:{silent}", f"127.0.0.1:{port}"]
        bootstrap = ",".join(pair if silent_first else pair[::-1])
        returned: list[object] = []
        asking = threading.Thread(target=lambda: returned.append(options.connection(bootstrap)), daemon=True)
        asking.start()
        asking.join(timeout=60)  # an hour's wait for the silent one, were it waited for
        assert returned and getattr(returned[0], "bootstrap", None) == bootstrap
