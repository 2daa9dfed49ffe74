"""A broker of the test's own, which it may stop and start: never the shared broker on 127.0.0.1:9092.

`infra/kafka/kafka.sh` runs a single KRaft broker on the ports and data directory given
by `KAFKA_PORT`, `KAFKA_CONTROLLER_PORT` and `KAFKA_STATE_DIR`; `OwnBroker` gives it
free ports and a directory under the test's `tmp_path`. Use the `own_broker` fixture
(import it into a test module or a conftest):

    from tests.brokers import OwnBroker, own_broker  # noqa: F401 - a fixture

    def test_outage(own_broker: OwnBroker) -> None:
        own_broker.stop(); ...; own_broker.start()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import pytest
from aiokafka.errors import KafkaError

from tests.kafkatools import ROOT, free_port
from tests.waiting import eventually_async

KAFKA_SH = ROOT / "infra/kafka/kafka.sh"
T = TypeVar("T")


class OwnBroker:
    """A single local broker with its own ports and data directory, which the test may stop and start."""

    def __init__(self, state: Path, heap: str = "-Xmx512m -Xms512m", proxied: bool = False,
                 properties: dict[str, str] | None = None) -> None:
        """`properties`: settings of its server.properties overridden (kafka.sh's KAFKA_EXTRA_PROPERTIES)."""
        self.state = state
        self.env = {**os.environ, "KAFKA_STATE_DIR": str(state), "KAFKA_PORT": str(free_port()),
                    "KAFKA_CONTROLLER_PORT": str(free_port()),
                    "KAFKA_HEAP_OPTS": os.environ.get("KAFKA_HEAP_OPTS", heap),
                    "KAFKA_EXTRA_PROPERTIES": "\n".join(f"{k}={v}" for k, v in (properties or {}).items())}
        self.env.pop("KAFKA_BROKERS", None)  # one broker, whatever the caller's shell says
        self.env.pop("KAFKA_PROXIED", None)
        self.bootstrap = f"127.0.0.1:{self.env['KAFKA_PORT']}"
        self.proxied: tuple[int, int] | None = None
        """With `proxied`, the ports of a second PLAINTEXT listener and of the address it advertises, where a proxy
        of the caller's forwards to it (`tests/chaos/netproxy.py`): clients bootstrapped there stay behind the proxy,
        since the broker's metadata names that address (kafka.sh's KAFKA_PROXIED; the PLAINTEXT broker only)."""
        if proxied:
            self.proxied = (free_port(), free_port())
            self.env["KAFKA_PROXIED"] = "{}:{}".format(*self.proxied)

    def run(self, action: str, timeout: float = 180) -> None:
        """`kafka.sh <action>` (start, stop, status, wait) on this broker only."""
        done = subprocess.run([str(KAFKA_SH), action], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"kafka.sh {action}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        self.run("start")

    def stop(self) -> None:
        self.resume()  # a frozen JVM would take SIGTERM only once woken: kafka.sh stop would wait 30 s, then SIGKILL
        self.run("stop")

    @property
    def pid(self) -> int | None:
        """The broker's JVM, as kafka.sh knows it (`kafka.pid` in its state directory); None while stopped."""
        try:
            return int((self.state / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def freeze(self) -> None:
        """SIGSTOP the JVM (a GC pause, a stalled VM, a hung disk): its connections stay open, nothing answers."""
        pid = self.pid
        assert pid is not None, "no broker to freeze: not started"
        os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the JVM (nothing if it runs, or is not started)."""
        pid = self.pid
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        """Stop it (woken first, if frozen) and delete its data."""
        self.stop()
        shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture
def own_broker(tmp_path: Path, kafka_bootstrap: str) -> Iterator[OwnBroker]:
    """A started broker of this test only; stopped and deleted afterwards. After `kafka_bootstrap`, whatever the
    order of a test's fixtures: on the secure broker it puts admin's credentials in the environment this broker
    and its clients take (tests/conftest.py)."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("an external broker was given; this test stops a local one of its own")
    broker = OwnBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.remove()


async def run_again(run: Callable[[], Awaitable[T]], timeout: float = 90.0) -> T:  # noqa: ASYNC109 - a retry window
    """`run()` once the broker is back, run again as an operator would while it fails with a Kafka error: a broker
    woken from a long SIGSTOP first lists no broker in its metadata, until its controller has fenced it and it has
    registered again (an erasure failed with NodeNotReadyError, 'none of 0 brokers answers', after a request had
    been answered: CI load)."""
    async def attempt() -> tuple[T]:
        try:
            return (await run(),)
        except KafkaError as exc:  # not yet: the last one is said if none succeeds
            raise AssertionError(f"{type(exc).__name__}: {exc}") from exc

    return (await eventually_async(attempt, timeout=timeout, interval=1.0, what="the command run again"))[0]
