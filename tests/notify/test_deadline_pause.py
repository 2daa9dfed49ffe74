"""A deadline tracker paused past its session writes nothing once resumed until its group answers it again.

Resumed, its loop had a tick due and its old store in hand: before its first heartbeat was answered it fired an
alert the next owner's state no longer called for and wrote that dossier's state over the next owner's tombstone.
The changelog is compacted: every later restore had the closed dossier open again (audit)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.notification import DeadlineMessage, NotificationKind, TrackedDossier
from services.notify.deadline_index import key_of
from services.notify.deadline_store import changelog_spec
from services.notify.topics import Names
from tests.kafkatools import free_port, produce, read_all, start_service, stop_service
from tests.notify.events import day_ending_in
from tests.notify.test_deadline_tracker import restored
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
OVERDUE_IN_S = 75
"""The dossier's due day ends this long after the first tracker starts: time for the pause, the takeover and the
close before it, on a loaded machine too (each step below waits for its condition, not for a time)."""
FAST = {"NOTIFY_SESSION_TIMEOUT_MS": "6000", "NOTIFY_HEARTBEAT_INTERVAL_MS": "1000", "NOTIFY_DEADLINE_TICK_S": "0.5"}


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for proc in running:
        proc.send_signal(signal.SIGCONT)
        stop_service(proc)


async def test_a_tracker_resumed_after_its_session_writes_nothing_over_the_next_owner(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, tmp_path: Path,
        procs: list[subprocess.Popen[bytes]]) -> None:
    ahead, now = day_ending_in(OVERDUE_IN_S)
    overdue_at = time.monotonic() + OVERDUE_IN_S
    dossier = TrackedDossier(dossier_code="D-PAUSE", commune="02269", province="08", procedure_code="1", due_at=now)
    key = key_of(dossier.commune, dossier.dossier_code)
    changelog = changelog_spec(namespace).name

    def start(name: str) -> Path:
        log = tmp_path / f"{name}.log"
        env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "NOTIFY_NAMESPACE": namespace, **FAST,
               "NOTIFY_DEADLINE_WEB_PORT": str(free_port()), "NOTIFY_DEADLINE_STATE_DIR": str(tmp_path / "state"),
               "NOTIFY_DEADLINE_CLOCK_AHEAD_S": ahead}
        procs.append(start_service("services.notify.deadline_worker", env, log))
        return log

    async def states() -> list[bytes | None]:
        """The changelog's records of the dossier, in order (the last is what a restore keeps)."""
        return [r.value for r in await read_all(kafka_bootstrap, changelog, idle=1) if r.key == key]

    async def publish(d: TrackedDossier) -> None:
        await produce(kafka_bootstrap, notify_topics.deadlines,
                      [(d.commune.encode(), DeadlineMessage(dossier=d).model_dump_json().encode(), [])])

    first = start("a")
    await publish(dossier)
    await eventually_async(states, timeout=60, interval=0.5, what="the first tracker holding the dossier")
    procs[0].send_signal(signal.SIGSTOP)  # past its session: the second takes every partition
    second = start("b")
    await eventually_async(lambda: restored(second) and set(restored(second)[-1]) == set(range(6)), timeout=60,
                           interval=0.5, what="the second tracker owning every partition")
    await publish(dossier.model_copy(update={"is_open": False}))  # closed: the second tracker forgets it

    async def forgotten() -> bool:
        return (await states())[-1] is None

    await eventually_async(forgotten, timeout=30, interval=0.5, what="the dossier's tombstone")
    assert time.monotonic() < overdue_at, "closed after its due day was over: this machine was too slow for the test"
    await asyncio.sleep(overdue_at + 1 - time.monotonic())  # the trackers' clock past the due day
    procs[0].send_signal(signal.SIGCONT)  # its old store has the dossier open, and overdue now
    await eventually_async(lambda: first.read_text(encoding="utf-8").count('"deadline.tracking"') >= 2, timeout=60,
                           interval=0.5, what="the first tracker back in the group, tracking its partitions again")
    alerts = [json.loads(r.value or b"") for r in await read_all(kafka_bootstrap, notify_topics.alerts, idle=1)]
    assert not [a for a in alerts if a["kind"] == NotificationKind.OVERDUE.value], "a closed dossier alerted overdue"
    assert (await states())[-1] is None, "the closed dossier's tombstone was written over"

