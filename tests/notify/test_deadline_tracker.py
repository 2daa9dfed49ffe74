"""The deadline tracker on the real broker: partition-owned restore, no alert twice across rebalances/restarts, and a
changelog state that is no dossier's skipped."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.notification import DeadlineMessage, NotificationKind, TrackedDossier
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.notify.deadline_index import key_of
from services.notify.deadline_store import changelog_spec
from services.notify.topics import Names
from tests.kafkatools import Producing, free_port, produce, read_all, start_service, stop_service
from tests.notify.events import day_ending_in, one_commune_per_partition
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
    # the trackers' clock: SOON-*'s due day ends 120 s from now (it was 45 s: a tracker that first ticked after it
    # fired SOON-*'s overdue alerts at once and never their due-soon ones, and the wait for 72 alerts failed)
    ahead, now = day_ending_in(120)

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


async def test_a_changelog_state_that_is_no_dossier_is_skipped_and_the_tracker_restores_the_rest_and_alerts(
        kafka_bootstrap: str, namespace: str, notify_topics: Names, tmp_path: Path,
        trackers: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    """Empty, `{}` and non-JSON states in the changelog, between good ones, on every partition: the tracker restores
    the good states and alerts on them, logs each partition's skipped states by kind (no content), and goes on taking
    new states (one of them a skipped dossier's). Before, the restore raised ValidationError: the tracker ended, and
    notify with it, at every start."""
    now = datetime.now(UTC)
    spec = changelog_spec(namespace)
    await ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [spec])
    communes = one_commune_per_partition()

    def late(commune: str, code: str) -> TrackedDossier:
        return TrackedDossier(dossier_code=code, commune=commune, province="08", procedure_code="1",
                              due_at=now - timedelta(days=2))

    async with Producing(kafka_bootstrap) as producing:
        for p, c in enumerate(communes):
            for code, value in (("OLD", late(c, "OLD").model_dump_json().encode()), ("EMPTY", b""),
                                ("BRACES", b"{}"), ("TEXT", b"0912345678 not json"),
                                ("NEW", late(c, "NEW").model_dump_json().encode())):
                await producing.producer.send_and_wait(spec.name, value, key=key_of(c, code), partition=p)
    log = tmp_path / "tracker.log"
    trackers["a"] = (start_service("services.notify.deadline_worker", {
        "KAFKA_BOOTSTRAP": kafka_bootstrap, "NOTIFY_NAMESPACE": namespace, "NOTIFY_DEADLINE_TICK_S": "0.5",
        "NOTIFY_DEADLINE_WEB_PORT": str(free_port()), "NOTIFY_DEADLINE_STATE_DIR": str(tmp_path / "state")}, log), log)

    async def overdue() -> set[str]:
        records = await read_all(kafka_bootstrap, notify_topics.alerts, idle=1)
        return {f"{a['commune']}:{a['dossier_code']}" for a in (json.loads(r.value or b"") for r in records)
                if a["kind"] == NotificationKind.OVERDUE.value}

    restored_ones = {f"{c}:{code}" for c in communes for code in ("OLD", "NEW")}
    await eventually_async(lambda: _has(overdue(), restored_ones), timeout=90, interval=1, what="restored alerts")
    await produce(kafka_bootstrap, notify_topics.deadlines, [
        (c.encode(), DeadlineMessage(dossier=late(c, code)).model_dump_json().encode(), [])
        for c in communes for code in ("LATER", "EMPTY")])
    taken = {f"{c}:{code}" for c in communes for code in ("LATER", "EMPTY")}
    await eventually_async(lambda: _has(overdue(), taken), timeout=60, interval=1, what="alerts on new states")
    assert trackers["a"][0].poll() is None, "the tracker runs on"
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if '"deadline.state_skipped"' in x]
    assert sorted((x["partition"], x["why"], x["states"]) for x in lines) == sorted(
        (p, why, n) for p in range(len(communes)) for why, n in (("empty", 1), ("not_a_state", 1), ("not_json", 1)))
    assert "0912345678" not in log.read_text(encoding="utf-8")


async def _has(pending: Awaitable[set[str]], wanted: set[str]) -> bool:
    """Whether the keys seen so far hold `wanted` (else an assertion saying how many are missing)."""
    missing = wanted - await pending
    assert not missing, f"{len(missing)} of {len(wanted)} missing"
    return True
