"""The faults of the chaos matrix, each a blow and what lifts it. Only a broker of the row's own is ever stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from aiokafka.client import CoordinationType

from tests import naming
from tests.chaos.netproxy import CutMode
from tests.chaos.scenario import Acks, Load, Stage
from tests.cluster.tools import metric_sum, scrape
from tests.faults import LAST_COMMIT
from tests.waiting import eventually_async


@dataclass(frozen=True)
class KillWorker:
    """SIGKILL one worker mid-stream (no commit, no leave-group); a successor is started at once."""

    index: int = 0

    async def inject(self, stage: Stage, load: Load) -> None:
        await asyncio.to_thread(stage.strike(self.index).kill)

    async def lift(self, stage: Stage, load: Load) -> None:
        assert stage.struck is not None
        load.start_worker(stage, f"{stage.struck.name}-successor")


@dataclass(frozen=True)
class PauseWorker:
    """SIGSTOP one worker for `seconds` (past its session timeout: the group moves its partitions), then SIGCONT."""

    seconds: float = 12
    index: int = 0

    async def inject(self, stage: Stage, load: Load) -> None:
        stage.strike(self.index).pause()

    async def lift(self, stage: Stage, load: Load) -> None:
        await asyncio.sleep(self.seconds)  # the fault's length is the point: nothing to wait on
        assert stage.struck is not None
        stage.struck.resume()


CUT_SLACK_S = 1.0
"""A commit answered before a cut may be recorded just after it."""


@dataclass(frozen=True)
class PartitionWorker:
    """Cut the network between the row's first worker and the broker for `seconds` (past its session timeout), then
    heal it: the row runs on a "proxied" broker, which that worker reaches through `Stage.proxy` only. Unlike a
    SIGSTOP, the worker runs on through the cut: its requests get no answer, its own timeouts fire (a transaction's,
    a commit's), and it may give up, abort or try again; healed, its connections carry what it wrote meanwhile, and
    it comes back as a zombie whose transactions and commits the broker must fence. aiokafka's heartbeat waits out
    its request timeout (40 s or more), so a cut shorter than that is learnt of only when the heal brings the
    heartbeat's answer (an unknown member). In the default "blackhole" mode nothing crosses and nothing is refused (a
    dropped route); "reset" resets every connection instead. Where the load counts its acknowledged records (`Acks`),
    the cut lands right after one, while the workers write what it caused."""

    seconds: float = 20
    mode: CutMode = "blackhole"
    after_ack_s: float = 0.005

    async def inject(self, stage: Stage, load: Load) -> None:
        assert stage.proxy is not None, "a network partition needs the row's proxied broker"
        worker = stage.strike(0)
        assert worker.name in stage.behind_proxy, f"{worker.name} does not reach the broker through the proxy"
        if isinstance(load, Acks):
            seen = load.acked()
            await eventually_async(lambda: load.acked() > seen, timeout=30, interval=0.001,
                                   what="a record acknowledged")
            await asyncio.sleep(self.after_ack_s)
        stage.proxy.cut(self.mode)
        worker.cut_off = True
        stage.notes.append(f"{worker.name} cut off {self.seconds:g} s ({self.mode})")

    async def lift(self, stage: Stage, load: Load) -> None:
        assert stage.proxy is not None and stage.struck is not None
        worker, cut_at = stage.struck, time.time()
        await asyncio.sleep(self.seconds)  # the partition's length is the point
        last_commit = metric_sum(await asyncio.to_thread(scrape, worker.port), LAST_COMMIT)
        stage.proxy.heal()
        stage.healed_at = time.time()
        worker.cut_off = False
        # a worker that reached the broker some other way (a listener advertised wrong) would commit on, and the row
        # would test nothing: a commit answered during the cut, past what was on its way as it began, proves it
        assert last_commit < cut_at + CUT_SLACK_S, (f"{worker.name} committed {last_commit - cut_at:.1f} s into the "
                                                    "cut: it is not behind the proxy alone")


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
class FreezeBroker:
    """SIGSTOP the JVM of the row's own broker for `seconds`, then SIGCONT: a GC pause, a stalled VM, a hung disk.
    Its connections stay open and nothing answers, so clients meet their request, transaction and session timeouts
    rather than refused connections; on waking, the broker finds every session and transaction of the frozen span
    expired at once. Where the load counts its acknowledged records (`Acks`), the freeze lands right after one, so
    that it catches the workers writing what the record caused rather than idle between two records."""

    seconds: float = 45
    progress_after_lift: bool = True
    """notify sends what it had read while the broker is frozen: the recovery is progress once it is awake."""
    after_ack_s: float = 0.005
    """How long after the acknowledgement: the broker answers the workers' fetch as it acknowledges the record, and
    frozen at once it had not always sent that answer (1 metrics run in 3 caught no transaction)."""

    async def inject(self, stage: Stage, load: Load) -> None:
        assert stage.own_broker is not None, "a broker freeze needs the row's own broker"
        if isinstance(load, Acks):
            seen = load.acked()
            await eventually_async(lambda: load.acked() > seen, timeout=30, interval=0.001,
                                   what="a record acknowledged")
            await asyncio.sleep(self.after_ack_s)
        stage.own_broker.freeze()

    async def lift(self, stage: Stage, load: Load) -> None:
        assert stage.own_broker is not None
        await asyncio.sleep(self.seconds)  # the freeze's length is the point
        stage.own_broker.resume()


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


Role = Literal["transaction", "group", "controller"]
ROLES: tuple[Role, ...] = ("transaction", "group", "controller")
CANDIDATES = 200
"""Namespaces tried for one whose coordinators are apart (with leaders spread over 3 nodes, about 2 in 9 are)."""


@dataclass(frozen=True)
class Coordinated:
    """What coordinates a service's first worker on a namespace: its consumer group and its transactional id (None:
    the service writes no transactions)."""

    group: Callable[[str], str]
    transactional_id: Callable[[str], str] | None = None

    def keys(self, namespace: str) -> list[tuple[CoordinationType, str]]:
        keys = [(CoordinationType.GROUP, self.group(namespace))]
        if self.transactional_id is not None:
            keys.append((CoordinationType.TRANSACTION, self.transactional_id(namespace)))
        return keys


def held_roles(controller: int, coordinators: Sequence[int]) -> dict[Role, int]:
    """Which node holds each role, from `Coordinated.keys`' coordinators (the group's first)."""
    return {"controller": controller, **dict(zip(("group", "transaction"), coordinators, strict=False))}


def alone(held: dict[Role, int], role: Role) -> bool:
    """The node holding `role` holds no other of `held`."""
    return list(held.values()).count(held[role]) == 1


@dataclass(frozen=True)
class KillCoordinator:
    """SIGKILL the node of the row's own cluster that holds `role` for the service when the blow lands: the
    transaction coordinator of the first worker's transactional id, the coordinator of its group (FindCoordinator
    both), or the KRaft active controller (DescribeQuorum). It is restarted at once.

    The row's namespace is picked so that this node holds none of the service's other roles (one of `CANDIDATES`
    random namespaces usually is), so the row shows what losing that one role costs; the note names the node and
    every role it held when it was killed. With `join`, a worker starts right after the blow (its start and the
    rebalance meet the cluster before the dead node is fenced)."""

    role: Role
    of: Coordinated
    join: bool = False
    """A worker joins right after the blow: the group rebalances during the failover."""

    async def prepare(self, stage: Stage) -> None:
        assert stage.cluster is not None, "a coordinator kill needs the row's own cluster"
        controller = await asyncio.to_thread(stage.cluster.controller)
        names = [f"chaos{naming.unique(8)}" for _ in range(CANDIDATES)]
        width = len(self.of.keys(""))
        found = await stage.cluster.coordinators([key for name in names for key in self.of.keys(name)])
        for i, name in enumerate(names):
            held = held_roles(controller, found[i * width:(i + 1) * width])
            if alone(held, self.role):
                stage.namespace = name
                return

    async def inject(self, stage: Stage, load: Load) -> None:
        assert stage.cluster is not None, "a coordinator kill needs the row's own cluster"
        controller, found = await asyncio.gather(asyncio.to_thread(stage.cluster.controller),
                                                 stage.cluster.coordinators(self.of.keys(stage.namespace)))
        held = held_roles(controller, found)
        node = held[self.role]
        stage.notes.append(f"node {node} killed ({', '.join(r for r in ROLES if held.get(r) == node)})")
        stage.killed.append(node)
        await asyncio.to_thread(stage.cluster.kill_node, node)
        if self.join:
            load.start_worker(stage, "joiner")

    async def lift(self, stage: Stage, load: Load) -> None:
        assert stage.cluster is not None
        await asyncio.to_thread(stage.cluster.start_node, stage.killed[-1])


@dataclass(frozen=True)
class RebalanceStorm:
    """For `seconds`, a worker joins the first one and then leaves, by SIGTERM or SIGKILL in turn, each move waited
    for (every partition owned again) before the next: the recovery clock starts when the last worker has left."""

    seconds: float = 30

    async def inject(self, stage: Stage, load: Load) -> None:
        steady = stage.live()[0]  # one that exited unbidden in the set-up is noted and replaced, not relied on
        ends, moves = time.monotonic() + self.seconds, 0
        while time.monotonic() < ends:
            if moves:
                await eventually_async(lambda: load.owned([steady]), timeout=60, interval=0.2,
                                       what="the steady worker owning every partition again")
            joined = load.start_worker(stage, f"storm-{moves}")
            await eventually_async(lambda: load.owned([steady, joined]), timeout=60, interval=0.2,  # noqa: B023
                                   what="a joining worker taking partitions")
            if (moves // 2) % 2:  # every other worker killed, the rest stopped
                await asyncio.to_thread(joined.kill)
            else:
                await asyncio.to_thread(joined.stop)
            moves += 2
        assert moves >= 6, f"only {moves} partition moves in {self.seconds:g} s"

    async def lift(self, stage: Stage, load: Load) -> None:
        return None
