"""The faults of the chaos matrix, each a blow and what lifts it. Only a broker of the row's own is ever stopped."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tests.chaos.scenario import Load, Stage
from tests.waiting import eventually_async


@dataclass(frozen=True)
class KillWorker:
    """SIGKILL one worker mid-stream (no commit, no leave-group); a successor is started at once."""

    index: int = 0

    async def inject(self, stage: Stage, load: Load) -> None:
        await asyncio.to_thread(stage.workers[self.index].kill)

    async def lift(self, stage: Stage, load: Load) -> None:
        load.start_worker(stage, f"{stage.workers[self.index].name}-successor")


@dataclass(frozen=True)
class PauseWorker:
    """SIGSTOP one worker for `seconds` (past its session timeout: the group moves its partitions), then SIGCONT."""

    seconds: float = 12
    index: int = 0

    async def inject(self, stage: Stage, load: Load) -> None:
        stage.workers[self.index].pause()

    async def lift(self, stage: Stage, load: Load) -> None:
        await asyncio.sleep(self.seconds)  # the fault's length is the point: nothing to wait on
        stage.workers[self.index].resume()


@dataclass(frozen=True)
class RestartBroker:
    """Stop the row's own broker (orderly shutdown), keep it down `down_s`, start it again."""

    down_s: float = 5

    async def inject(self, stage: Stage, load: Load) -> None:
        assert stage.own_broker is not None, "a broker restart needs the row's own broker"
        await asyncio.to_thread(stage.own_broker.stop)

    async def lift(self, stage: Stage, load: Load) -> None:
        assert stage.own_broker is not None
        await asyncio.sleep(self.down_s)  # the outage's length is the point
        await asyncio.to_thread(stage.own_broker.start)


@dataclass(frozen=True)
class KillClusterNode:
    """SIGKILL one node of the row's own 3-broker cluster; it is restarted at once (recovering its logs)."""

    node: int = 2

    async def inject(self, stage: Stage, load: Load) -> None:
        assert stage.cluster is not None, "a node kill needs the row's own cluster"
        await asyncio.to_thread(stage.cluster.kill_node, self.node)

    async def lift(self, stage: Stage, load: Load) -> None:
        assert stage.cluster is not None
        await asyncio.to_thread(stage.cluster.start_node, self.node)


@dataclass(frozen=True)
class RebalanceStorm:
    """For `seconds`, a worker joins the first one and then leaves, by SIGTERM or SIGKILL in turn, each move waited
    for (every partition owned again) before the next: the recovery clock starts when the last worker has left."""

    seconds: float = 30

    async def inject(self, stage: Stage, load: Load) -> None:
        steady = stage.workers[0]
        ends, moves = time.monotonic() + self.seconds, 0
        while time.monotonic() < ends:
            if moves:
                await eventually_async(lambda: load.owned([steady]), timeout=60, interval=0.2,
                                       what="the steady worker owning every partition again")
            joined = load.start_worker(stage, f"storm-{moves}")
            await eventually_async(lambda: load.owned([steady, joined]), timeout=60, interval=0.2,  # noqa: B023
                                   what="a joining worker taking partitions")
            if moves % 2:
                await asyncio.to_thread(joined.kill)
            else:
                await asyncio.to_thread(joined.stop)
            moves += 2
        assert moves >= 6, f"only {moves} partition moves in {self.seconds:g} s"

    async def lift(self, stage: Stage, load: Load) -> None:
        return None
