"""The deadline tracker on the real broker: partition-owned restore, and no alert twice across rebalances/restarts."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import Awaitable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from schemas.notification import DeadlineMessage, NotificationKind, TrackedDossier
from services.notify.topics import Names
from tests.kafkatools import free_port, produce, read_all, start_service, stop_service
from tests.notify.events import day_ending_in
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
COMMUNES = [f"{2269 + i:05d}" for i in range(24)]  # enough communes to land on every partition


def restored(log: Path) -> list[list[int]]:
    """The partitions of each `deadline.restored` line the tracker logged, in order."""
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if '"deadline.restored"' in x]
    return [line["partitions"] for line in lines]


@pytest.fixture
def trackers(kafka_bootstrap: str, namespace: str, notify_topics: Names,
             tmp_path: Path) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], Path]]]:
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    yield running
    for proc, _ in running.values():
        stop_service(proc)


async def test_trackers_restore_only_owned_partitions_and_fire_each_alert_once(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, tmp_path: Path,
        trackers: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    """A second tracker restores only the partitions it is given; restarts and rebalances repeat no alert."""
    ahead, now = day_ending_in(45)  # the trackers' clock: SOON-*'s due day ends 45 s from now

    def start(name: str) -> Path:
        log = tmp_path / f"{name}-{len(trackers)}.log"
        env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "NOTIFY_NAMESPACE": namespace, "NOTIFY_DEADLINE_TICK_S": "0.5",
               "NOTIFY_DEADLINE_WEB_PORT": str(free_port()), "NOTIFY_DEADLINE_STATE_DIR": str(tmp_path / "state"),
               "NOTIFY_DEADLINE_CLOCK_AHEAD_S": ahead}
        trackers[name] = (start_service("services.notify.deadline_worker", env, log), log)
        return log

    overdue_now = [TrackedDossier(dossier_code=f"LATE-{c}", commune=c, province="08", procedure_code="1",
                                  due_at=now - timedelta(days=1)) for c in COMMUNES]
    later = [TrackedDossier(dossier_code=f"SOON-{c}", commune=c, province="08", procedure_code="1",
                            due_at=now) for c in COMMUNES]
    # opened and closed before the tracker starts (one batch): overdue if it were open, it must never alert
    closed = [d.model_copy(update={"dossier_code": f"DONE-{d.commune}"}) for d in overdue_now]
    states = [*overdue_now, *later, *closed, *(d.model_copy(update={"is_open": False}) for d in closed)]
    await produce(kafka_bootstrap, notify_topics.deadlines,
                  [(d.commune.encode(), DeadlineMessage(dossier=d).model_dump_json().encode(), []) for d in states])

    async def alerts() -> Counter[tuple[str, str]]:
        records = await read_all(kafka_bootstrap, notify_topics.alerts, idle=1)
        return Counter((a["dossier_code"], a["kind"]) for a in (json.loads(r.value or b"") for r in records))

    first = start("a")
    wanted_now = 2 * len(COMMUNES)  # LATE-*: overdue; SOON-*: due soon
    await eventually_async(lambda: _count(alerts(), wanted_now), timeout=90, interval=1, what="first alerts")
    second = start("b")
    await eventually_async(lambda: len(restored(second)) >= 1 and len(restored(first)) >= 1, timeout=60,
                           interval=0.5, what="the second tracker's restore")
    b_parts = restored(second)[0]
    assert 0 < len(b_parts) < 6, "the second tracker restores only the partitions it was assigned"
    stop_service(trackers["a"][0])  # a clean stop: b takes every partition, restoring a's ones only
    await eventually_async(lambda: len(restored(second)) >= 2, timeout=60, interval=0.5, what="b takes over")
    assert set(restored(second)[1]) == set(range(6)) - set(b_parts)
    start("a")  # back: a rebalance again, while SOON-* go overdue
    await eventually_async(lambda: _count(alerts(), 3 * len(COMMUNES)), timeout=120, interval=1,
                           what="SOON-* overdue alerts")
    # Next is an absence (no alert twice): both trackers tick every 0.5 s, so a lost "alerted" flag would
    # re-fire within a tick or two; five ticks bound the wait.
    await asyncio.sleep(2.5)
    seen = await alerts()
    assert set(seen.values()) == {1}, "no alert fired twice"
    assert {k for (_, k) in seen} == {NotificationKind.OVERDUE.value, NotificationKind.DUE_SOON.value}
    assert not [code for (code, _) in seen if code.startswith("DONE-")], "a closed dossier never alerts"


async def _count(pending: Awaitable[Counter[tuple[str, str]]], wanted: int) -> bool:
    """Whether the alerts counted so far reach `wanted` (else an assertion saying how many)."""
    counts = await pending
    assert sum(counts.values()) >= wanted, f"{sum(counts.values())} of {wanted} alerts"
    return True
