"""One chaos row as data: a load (a service, its workers, what it is sent, how it is accounted) and a fault (the blow,
then what lifts it), run in four steps: setup, fault, recover, account.

The recovery clock starts when the blow has landed (the last blow, for a storm) and stops when live workers own
every partition between them and the service made progress again (a commit; for notify, a request reaching a
provider). The lift runs meanwhile (a successor starting, a paused worker resumed, a broker back), since a group may
recover before the fault is lifted (a worker paused past its session loses its partitions to the others); a fault
that `RecoversAfterLift` (a frozen broker) counts only progress after its lift.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from tests import naming
from tests.brokers import OwnBroker
from tests.chaos.netproxy import NetProxy
from tests.faults import Cluster, Worker
from tests.waiting import eventually_async

BrokerKind = Literal["shared", "own", "proxied", "cluster"]
"""Where a row runs: the shared broker, a broker of its own, one of its own whose first worker reaches it through a
proxy the row can cut (`NetProxy`: a network partition), or a 3-node cluster of its own."""
RESTARTS = "commune_service_restarts_total"
"""Runs a worker's runtime restarted after a Kafka error (a crash loop hidden inside the process): counted in the
note, and past the row's `max_restarts` a failure. Counted by the line each one logs (`RESTARTING`), in every
worker's log: a killed or paused worker's /metrics can no longer be read, and its restarts counted all the same.
A run ended while no broker answered logs it too, and counts in `commune_service_outage_restarts_total` instead."""
RESTARTING = "service.restarting"


@dataclass
class Stage:
    """What one scenario holds while it runs: its broker, namespace, working directory and worker processes."""

    bootstrap: str
    namespace: str
    workdir: Path
    own_broker: OwnBroker | None = None
    cluster: Cluster | None = None
    workers: list[Worker] = field(default_factory=list)
    restart: Callable[[Stage, str], Worker] | None = None
    """Starts a replacement for a worker that exited unbidden, as the deployment's process manager does
    (`restart: unless-stopped` in infra/compose.yaml)."""
    exits: list[str] = field(default_factory=list)
    """Workers that exited unbidden, with their exit codes: shown in the row's note."""
    killed: list[int] = field(default_factory=list)
    """Cluster nodes the fault killed, for its lift to start again."""
    notes: list[str] = field(default_factory=list)
    """What the fault wants the row's note to say (which node it killed, and what that node was)."""
    struck: Worker | None = None
    """The worker the fault picked (`strike`): the one its lift resumes or names a successor after."""
    proxy: NetProxy | None = None
    """On a "proxied" broker: the proxy the first worker reaches the broker through."""
    behind_proxy: list[str] = field(default_factory=list)
    """The worker started behind `proxy` (`bootstrap_for`)."""
    healed_at: float | None = None
    """When the proxy's cut healed (epoch seconds): what the worker cut off does from then on, the broker or the load
    must fence."""

    def bootstrap_for(self, name: str) -> str:
        """The bootstrap of a worker the load starts: through the proxy for the row's first worker on a "proxied"
        broker (its clients then stay behind it, reconnecting to the address the broker advertises there), the broker
        itself for every other (the load's sender and checker use `bootstrap`)."""
        if self.proxy is None or self.behind_proxy:
            return self.bootstrap
        self.behind_proxy.append(name)
        return self.proxy.address

    def live(self) -> list[Worker]:
        """Workers that can work now: neither ended, paused nor cut off. One that exited unbidden is noted and
        replaced."""
        for w in list(self.workers):
            code = w.exited_unbidden()
            if code is None:
                continue
            w.ended = True
            self.exits.append(f"{w.name} exited {code}")
            if self.restart is not None:
                self.restart(self, f"{w.name}-restarted")
        return [w for w in self.workers if w.running]

    def strike(self, index: int) -> Worker:
        """The `index`-th of the workers live now, for a fault to strike: one that exited unbidden since the last
        look is noted (failing the row) and replaced first, never struck, which would mark its exit as the fault's."""
        live = self.live()
        assert len(live) > index, f"{len(live)} live workers: none to strike at {index}"
        self.struck = live[index]
        return self.struck


@dataclass(frozen=True)
class Counts:
    """Jepsen-style accounting of every record sent: how many were lost, delivered more than once, or reordered.
    `out_of_order` None: order does not apply (counted per dossier where it does)."""

    sent: int
    lost: int
    duplicated: int
    out_of_order: int | None
    note: str = ""


class Load(Protocol):
    """A service under load: started on a stage, sent records in the background, accounted at the end."""

    async def setup(self, stage: Stage) -> None:
        """Create the namespace's topics, start the workers and the sending; return once the service is mid-stream."""
        ...

    def start_worker(self, stage: Stage, name: str) -> Worker:
        """One more worker of the service on the stage (a successor, or a worker joining)."""
        ...

    async def owned(self, workers: Sequence[Worker]) -> bool:
        """`workers` own every input partition between them, each at least one."""
        ...

    async def progressed(self, stage: Stage, since: float) -> bool:
        """The service made progress after `since` (epoch seconds): a commit, or a request reaching a provider."""
        ...

    async def settle(self, stage: Stage) -> None:
        """Wait until everything was sent and the service has dealt with it (bounded)."""
        ...

    async def account(self, stage: Stage) -> Counts:
        ...

    async def close(self) -> None:
        """Release what the load holds outside the workers (local providers, sinks)."""
        ...


@runtime_checkable
class Prepares(Protocol):
    async def prepare(self, stage: Stage) -> None:
        """Before the load starts: shape the stage for the blow (a coordinator kill picks the row's namespace)."""
        ...


@runtime_checkable
class Acks(Protocol):
    def acked(self) -> int:
        """Records the broker acknowledged to the load's sender so far: a fault may time its blow just after one, when
        the workers are reading it and about to write what it causes (a transaction, a commit)."""
        ...


@runtime_checkable
class RecoversAfterLift(Protocol):
    progress_after_lift: bool
    """The recovery's progress must come after the lift: work read before the blow may go on meanwhile (a frozen
    broker's), which is no recovery."""


class Fault(Protocol):
    async def inject(self, stage: Stage, load: Load) -> None:
        """The blow (or blows): returns once it has landed."""
        ...

    async def lift(self, stage: Stage, load: Load) -> None:
        """Undo the cause (start a successor, resume, restart the broker); returns once lifted."""
        ...


@dataclass(frozen=True)
class Scenario:
    name: str
    load: Callable[[], Load]
    fault: Fault
    broker: BrokerKind = "shared"
    fast: bool = False
    budget_s: float = 240.0
    """The whole row, setup to account: past it the row fails (a hung recovery is a finding, not a wait)."""
    recover_s: float = 90.0
    """From the blow until the service progresses again with every partition owned."""
    max_restarts: int = 0
    """The in-process restarts (`RESTARTS`, summed over all the row's workers) the row allows: 0 unless the fault
    makes a run end by design (a broker gone, a worker stalled past its session); past it the row fails (a crash
    loop)."""


@dataclass(frozen=True)
class Row:
    scenario: str
    counts: Counts | None
    recovered_s: float | None
    error: str = ""
    seconds: float = 0.0
    exits: tuple[str, ...] = ()
    """Workers that exited unbidden during the row (each replaced)."""
    restarts: int = 0
    """Runs the row's workers restarted in-process (`RESTARTS`), killed ones' too."""
    max_restarts: int = 0
    """The row's bound on `restarts` (`Scenario.max_restarts`)."""

    @property
    def restarts_over(self) -> str:
        """Why the row's in-process restarts fail it ("" while within its bound)."""
        if self.restarts <= self.max_restarts:
            return ""
        return (f"FAILED: {self.restarts} runs restarted in-process (`{RESTARTS}`), over the row's bound of "
                f"{self.max_restarts}")

    @property
    def clean(self) -> bool:
        """Nothing lost, duplicated or reordered, no worker exited unbidden (a crash the process manager hid by
        restarting it is still a crash: no input, no fault of the row's, should end a worker), and no more runs
        restarted in-process than the row allows (a crash loop the runtime hid by restarting is one too)."""
        c = self.counts
        return (not self.error and not self.exits and not self.restarts_over and c is not None and c.lost == 0
                and c.duplicated == 0 and not c.out_of_order)


async def committed_since(workers: Sequence[Worker], since: float) -> bool:
    """One of `workers` committed after `since` (epoch seconds)."""
    commits = await asyncio.gather(*(w.last_commit() for w in workers))
    return max(commits, default=0.0) > since


async def recovered(stage: Stage, load: Load, since: float, timeout_s: float,
                    lifted: asyncio.Task[None] | None = None) -> float:
    """Seconds from `since` (monotonic) until live workers own every partition and progressed after it; with
    `lifted`, after the lift ended too (a frozen broker: notify delivers what it had read while nothing answers)."""
    wall = time.time() - (time.monotonic() - since)
    lift_seen: list[float] = []

    async def progressing() -> bool:
        if lifted is not None:
            assert lifted.done(), "the fault not lifted yet"
            lift_seen[:] = lift_seen or [time.time()]
        live = stage.live()
        assert live, "no live worker"
        assert await load.owned(live), "partitions not all owned by live workers"
        assert await load.progressed(stage, max([wall, *lift_seen])), "no progress since the blow"
        return True

    await eventually_async(progressing, timeout=timeout_s, interval=0.1, what="recovery")
    return time.monotonic() - since


def _keep(log: Path, to: Path) -> None:
    """Keep a broker's log next to the workers' before its data directory is removed."""
    if log.exists():
        shutil.copyfile(log, to)


@asynccontextmanager
async def broker_for(kind: BrokerKind, shared: str, workdir: Path) -> AsyncIterator[Stage]:
    """A stage on the shared broker, or on a broker or 3-node cluster of its own (started here, removed after)."""
    namespace = f"chaos{naming.unique(8)}"
    if kind == "shared":
        yield Stage(shared, namespace, workdir)
        return
    if kind in ("own", "proxied"):
        broker = OwnBroker(workdir / "kafka", proxied=kind == "proxied")
        proxy = None if broker.proxied is None else NetProxy("127.0.0.1", broker.proxied[0], port=broker.proxied[1])
        try:
            if proxy is not None:
                await proxy.start()  # before the broker, which advertises its port
            await asyncio.to_thread(broker.start)
            yield Stage(broker.bootstrap, namespace, workdir, own_broker=broker, proxy=proxy)
        finally:
            if proxy is not None:
                await proxy.close()
            await asyncio.to_thread(_keep, broker.state / "logs" / "server.log", workdir / "broker.server.log")
            await asyncio.to_thread(broker.remove)
        return
    cluster = Cluster.fresh(workdir / "kafka-cluster")
    try:
        await asyncio.to_thread(cluster.run, "start")
        yield Stage(cluster.bootstrap, namespace, workdir, cluster=cluster)
    finally:
        for node in (1, 2, 3):
            await asyncio.to_thread(_keep, cluster.log(node), workdir / f"node{node}.server.log")
        await asyncio.to_thread(cluster.run, "reset")
        shutil.rmtree(cluster.state, ignore_errors=True)


@dataclass
class Progress:
    """Which step a row is in, so a failure or an overrun says where it happened."""

    step: str = "start"


async def _steps(scenario: Scenario, stage: Stage, load: Load, at: Progress) -> tuple[Counts, float, int]:
    at.step = "setup"
    if isinstance(scenario.fault, Prepares):
        await scenario.fault.prepare(stage)
    stage.restart = load.start_worker
    await load.setup(stage)
    at.step = "fault"
    await scenario.fault.inject(stage, load)
    blow = time.monotonic()
    at.step = "recover"
    lifting = asyncio.create_task(scenario.fault.lift(stage, load))
    try:
        after_lift = lifting if isinstance(scenario.fault, RecoversAfterLift) else None
        recovery = await recovered(stage, load, blow, timeout_s=scenario.recover_s, lifted=after_lift)
    finally:
        await lifting  # a lift that failed says why before a recovery that never came
    at.step = "settle"
    await load.settle(stage)
    at.step = "account"
    counts = await load.account(stage)
    return replace(counts, note="; ".join(n for n in (counts.note, *stage.notes) if n)), recovery, restarts(stage)


def restarts(stage: Stage) -> int:
    """Runs restarted in-process by every worker the row started: live, paused, killed or stopped."""
    stage.live()  # a worker that exited unbidden since the last look is noted (and replaced)
    return sum(w.logged(RESTARTING) for w in stage.workers)


async def run(scenario: Scenario, shared_bootstrap: str, workdir: Path) -> Row:
    """Run one row end to end; a failure or an overrun becomes the row's error, never an exception."""
    began = time.monotonic()
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    load, at, exits = scenario.load(), Progress(), list[str]()
    try:
        async with broker_for(scenario.broker, shared_bootstrap, workdir) as stage:
            exits = stage.exits
            try:
                async with asyncio.timeout(scenario.budget_s):
                    counts, recovery, restarts = await _steps(scenario, stage, load, at)
                return Row(scenario.name, counts, recovery, seconds=time.monotonic() - began, exits=tuple(exits),
                           restarts=restarts, max_restarts=scenario.max_restarts)
            finally:
                await asyncio.gather(*(asyncio.to_thread(w.stop) for w in stage.workers))
                await load.close()
    except Exception as exc:  # the row reports it; the matrix goes on
        what = f"over budget ({scenario.budget_s:g} s)" if isinstance(exc, TimeoutError) else (
            f"{type(exc).__name__}: {exc}")
        return Row(scenario.name, None, None, error=f"{at.step}: {what.splitlines()[0][:200]}",
                   seconds=time.monotonic() - began, exits=tuple(exits))
