"""intake's exactly-once under paused workers and rebalance storms, on a real broker (ADR 0011).

A worker stopped with SIGSTOP past its session timeout loses its partitions while it holds validated records and an
open transaction; resumed, it must publish none of them. Workers joining and leaving every few seconds move every
partition many times. In each case every raw record sent ends canonical or dead-lettered exactly once, records sent
without a key included (re-routed to their commune's partition), and each dossier's events keep their order.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest

from schemas.events import Family
from schemas.topics import RAW
from tests.intake.accounting import audit, feed, metric, metric_total, stream
from tests.intake.conftest import StartIntake
from tests.waiting import eventually_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
RATE = 300
TASKS = 6
BURST = 1000
MAX_FLOW_S = 300
"""The steady stream's bound: it stops once the scenario is over, long before this."""
FAST_GROUP = {"INTAKE_SESSION_TIMEOUT_MS": "6000", "INTAKE_HEARTBEAT_INTERVAL_MS": "1000"}
"""The broker's smallest session timeout (group.min.session.timeout.ms): a paused worker is evicted after 6 s."""


async def tasks_of(procs: list[subprocess.Popen[bytes]]) -> list[float]:
    """How many tasks (raw partition numbers) each worker owns, as its /metrics says (-1 while it does not answer)."""
    values = await asyncio.gather(*(asyncio.to_thread(metric, p.http_port, "commune_intake_tasks")  # type: ignore[attr-defined]
                                    for p in procs))
    return [-1.0 if v is None else v for v in values]


async def owning(procs: list[subprocess.Popen[bytes]], within_s: float, what: str) -> None:
    """Wait until `procs` own every task between them, each at least one."""
    async def settled() -> bool:
        counts = await tasks_of(procs)
        return sum(counts) == TASKS and min(counts) >= 1

    await eventually_async(settled, timeout=within_s, interval=0.2, what=what)


@pytest.mark.parametrize(("workers", "pause_s"), [(2, 12), (2, 30), (3, 12)], ids=["2-workers-12s", "2-workers-30s",
                                                                                    "3-workers-12s"])
def test_worker_paused_past_its_session_publishes_nothing_twice(
    kafka_bootstrap: str, intake_topics: dict[str, str], start_intake: StartIntake, workers: int, pause_s: int
) -> None:
    """A worker SIGSTOPped mid-stream past its session timeout, then resumed: 0 duplicated, 0 lost, order kept."""
    raw = intake_topics[RAW[Family.DOSSIER].name]
    records = stream(RATE * MAX_FLOW_S)
    burst = stream(BURST, start=1_000_000)

    async def scenario() -> int:
        procs = [start_intake(worker_id=str(i), **FAST_GROUP) for i in range(workers)]
        await owning(procs, 60, f"{workers} workers sharing the tasks")
        # the steady stream starts once the group has settled and flows until the resumed worker is back
        enough = asyncio.Event()
        feeder = asyncio.create_task(feed(kafka_bootstrap, raw, records, RATE, until=enough))
        paused, survivors = procs[0], procs[1:]
        # a burst just acknowledged: the worker to pause is validating it, with a transaction open or committing
        await feed(kafka_bootstrap, raw, burst, BURST * 20)
        stopped_at = time.monotonic()
        paused.send_signal(signal.SIGSTOP)
        try:
            # KIP-447: if the pause caught the worker between its offsets and its commit, the survivors wait for
            # that transaction to be aborted (transaction timeout 15 s + the broker's 10 s abort sweep) before
            # reading stable offsets; the paused worker resumes only once they own everything
            await owning(survivors, pause_s + 40, "the survivors taking the paused worker's tasks over")
            await asyncio.sleep(max(0.0, stopped_at + pause_s - time.monotonic()))
        finally:
            paused.send_signal(signal.SIGCONT)
        # back: it finds itself evicted, its drain refused, restarts its run, rejoins; both then read stable offsets
        # (bounded by twice the 15 s transaction timeout): a minute was too short on a loaded machine
        await owning(procs, 150, "the resumed worker back in the group")
        await asyncio.sleep(5)  # records still flowing to the whole group again
        assert not feeder.done(), f"the stream must outlast the scenario (at most {MAX_FLOW_S} s)"
        enough.set()
        sent = await feeder
        assert paused.poll() is None and all(p.poll() is None for p in survivors)
        # the paused worker ends one run when the pause caught a transaction (refused by the group outside a revoke,
        # or its producer fenced by the transaction timeout's abort: ADR 0017), the survivors none: twice that at most,
        # as the chaos matrix's bound (no crash loop, no collateral)
        restarts = await asyncio.gather(*(asyncio.to_thread(metric_total, p.http_port,  # type: ignore[attr-defined]
                                                            "commune_service_restarts_total") for p in procs))
        assert restarts[0] <= 2 and restarts[1:] == [0] * (workers - 1), f"runs restarted per worker: {restarts}"
        return sent

    sent = records[:asyncio.run(scenario())]
    result = asyncio.run(audit(kafka_bootstrap, intake_topics, sent + burst))
    result.assert_exactly_once()
    unkeyed = sum(1 for r in sent + burst if r.key is None and r.event_id)
    assert 0.5 * unkeyed < result.rerouted <= unkeyed, "unkeyed records outside their commune's partition move once"


def test_rebalance_storm_loses_and_repeats_nothing(
    kafka_bootstrap: str, intake_topics: dict[str, str], start_intake: StartIntake
) -> None:
    """Workers join, leave (SIGTERM) and die (SIGKILL) every few seconds for about 30 s while records flow:
    0 duplicated, 0 lost, order kept."""
    raw = intake_topics[RAW[Family.DOSSIER].name]
    records = stream(RATE * MAX_FLOW_S)

    async def scenario() -> tuple[int, int, int]:
        # the stream flows from the first worker's start until the storm is over (a fixed 45 s of it ended before a
        # storm that began late on a loaded machine)
        enough = asyncio.Event()
        feeder = asyncio.create_task(feed(kafka_bootstrap, raw, records, RATE, until=enough))
        steady = start_intake(worker_id="steady", **FAST_GROUP)
        await owning([steady], 60, "the first worker owning every task")
        moves, killed, ends = 0, 0, time.monotonic() + 30
        while time.monotonic() < ends:
            joined = start_intake(worker_id=f"storm-{moves}", **FAST_GROUP)
            await owning([steady, joined], 60, "a joining worker taking tasks")  # a rebalance
            dies = (moves // 2) % 2 == 1  # every other leaver dies (moves count by two: `moves % 2` never killed one)
            joined.send_signal(signal.SIGKILL if dies else signal.SIGTERM)  # leaving, or dying
            killed += dies
            await asyncio.to_thread(joined.wait, 30)
            await owning([steady], 60, "the steady worker owning every task again")  # a second one
            moves += 2
        assert not feeder.done(), "the storm must happen mid-stream"
        enough.set()
        return await feeder, moves, killed

    sent, moves, killed = asyncio.run(scenario())
    assert moves >= 6 and killed >= 1, (moves, killed)
    result = asyncio.run(audit(kafka_bootstrap, intake_topics, records[:sent]))
    result.assert_exactly_once()
