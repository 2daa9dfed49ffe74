"""The fault matrix: one line per row. Fast rows run in `make test` (tests/chaos/test_chaos_fast.py), all of them in
`make chaos`; each row is bounded by its budget and runs on a namespace of its own, and a row that stops or kills a
broker gets a broker (or a 3-node cluster) of its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tests.chaos.injections import (
    FreezeBroker,
    KillClusterNode,
    KillCoordinator,
    KillWorker,
    PartitionWorker,
    PauseWorker,
    RebalanceStorm,
    RestartBroker,
)
from tests.chaos.intake import COORDINATED as INTAKE_COORDINATED
from tests.chaos.intake import IntakeLoad
from tests.chaos.metrics import COORDINATED as METRICS_COORDINATED
from tests.chaos.metrics import FAST_GROUP as METRICS_FAST_GROUP
from tests.chaos.metrics import MetricsLoad
from tests.chaos.notify import COORDINATED as NOTIFY_COORDINATED
from tests.chaos.notify import NotifyLoad, ProviderOutage
from tests.chaos.scenario import Fault, Load, Scenario

SIGKILL_BURST = {"NOTIFY_RATE_PER_S": '{"sms": 60, "webhook": 200}', "NOTIFY_ROUTINE_WORKERS": "8"}
"""Rate-limited SMS so that the kill lands with most of the burst still queued, and requests in flight."""
SIGKILL_IN_FLIGHT = 8 + 32
"""Requests the kill may leave in flight, sent again by the successor (the bound of tests/notify/test_notify_faults.py:
8 routine SMS workers, and the webhooks')."""
PROBE_SOON = {"NOTIFY_CIRCUIT_PROBE_S": "5"}
"""The open circuit probes every 5 s, not 30 (the default): within the 15 s outage it still opens, parks and fails
probes, and its return is found in seconds rather than 15 s after it (each parked request waited its 30 s more)."""
BROKER_RESTART_RUNS = 10
"""Twice the 5 runs the broker restart of intake or metrics ends by design (README, 2026-12-05): each run ends on the
lost broker (a transaction fails) and its start is tried again, backing off from 0.5 to 8 s, until the broker is back;
a slower broker start adds one per 8 s."""
NOTIFY_FAST_GROUP = {"NOTIFY_SESSION_TIMEOUT_MS": "6000", "NOTIFY_HEARTBEAT_INTERVAL_MS": "2000", "NOTIFY_DRAIN_S": "5",
                     "NOTIFY_PROVIDER_TIMEOUT_S": "2", "NOTIFY_ROUTINE_WORKERS": "8"}
"""As tests/notify/test_notify_pause.py: evicted after 6 s paused; 8 routine senders, whose calls in flight when the
blow lands may be made again by the partition's next owner (`SIGKILL_IN_FLIGHT` bounds them)."""
STORM_KILLS = 4
"""Workers a 30 s storm kills at most (one join and leave takes ~5 s or more, every other leaver is killed)."""
STALLED_RUNS = 2
"""Twice the 1 run a SIGSTOP past the session timeout ends by design. The paused worker of metrics or notify wakes past
its session and starts its run again from Kafka rather than act as a zombie (`WorkerStalled`, ADR 0012). Intake's ends
one when the pause caught a transaction: refused by the group on waking outside a revoke, or its producer fenced by the
transaction timeout's abort (ADR 0017); with the bound at 0 the row failed whenever that happened (1 run in 4)."""


FROZEN_S = 45
"""A broker freeze (SIGSTOP of its JVM) past every client's request timeout (aiokafka's 40 s), intake's transaction
timeout (15 s) and the offset commits' (notify's 5 s, metrics' 30 s); metrics' lasts 65 s, past its transaction
timeout (60 s) too, so that the broker aborts the transaction it froze under as it wakes."""
FROZEN_INTAKE_RUNS = 4
"""Twice the 2 runs a freeze ends in intake by design (2026-12-06: 1, 2, 1 and 1 in four runs): the transaction the
freeze caught is given up (`TransactionStuck`, past the transaction timeout), and the next run's start, which waits
on the frozen broker, may fail once more as it wakes (`NodeNotReadyError`)."""
FROZEN_METRICS_RUNS = 2
"""Twice the 1 run a freeze ends in metrics by design: the changelog transaction (or offset commit) it caught is given
up (`WriteStuck` at the transaction timeout, `CommitStuck` at the commit's) and the run restarts from the changelog;
the next run waits on the broker rather than fail. notify rides a freeze out as a broker restart (none ends)."""


PARTITIONED_S = 20
"""A network partition of one worker: past its 6 s session (the rows' fast groups), so the group moves its partitions
while it is cut, and past intake's 15 s transaction timeout and notify's 5 s commit timeout, which it meets while cut;
short of metrics' 60 s transaction timeout, whose transaction the heal finds open."""
PARTITIONED_SHORT_S = 10
"""Past intake's session, short of its transaction timeout: the heal finds the cut-off worker's transaction open, and
delivers its offsets, sent with the generation it was evicted from, to the group (KIP-447)."""


PARTITIONED_RUNS = 2
"""Twice the 1 run a partition ends in intake and metrics by design (2026-12-06). intake's transaction caught by the
cut is given up past its timeout (`TransactionStuck`), or, healed before that, refused by the group (`GroupFenced`,
as a SIGSTOP's); metrics' cut-off worker finds its changelog writers fenced by the partitions' new owner once healed
(`ProducerFenced`, ADR 0016) and restores from the changelog. notify rides the cut out: its commits are refused once
healed and it rejoins (none ends)."""


def partitioned(name: str, load: Callable[[], Load], seconds: float = PARTITIONED_S,
                max_restarts: int = 0) -> Scenario:
    """A row whose first worker of two is cut off from the row's own broker `seconds` mid-stream, then healed: the
    other takes its partitions over, and it comes back to the group as records still flow."""
    return Scenario(name, load, PartitionWorker(seconds=seconds), broker="proxied", budget_s=300,
                    max_restarts=max_restarts)


def frozen(name: str, load: Callable[[], Load], seconds: float = FROZEN_S, max_restarts: int = 0) -> Scenario:
    """A row whose own broker is frozen `seconds` mid-stream (not fast: a minute and a half or more). The recovery
    clock runs through the freeze, and its progress must come after the broker woke."""
    return Scenario(name, load, FreezeBroker(seconds=seconds), broker="own", budget_s=300, recover_s=seconds + 90,
                    max_restarts=max_restarts)


def on_cluster(name: str, load: Callable[[], Load], fault: Fault) -> Scenario:
    """A row on a 3-node cluster of its own, with the time a node's loss takes to settle (a new controller fences
    the dead node a broker session after the blow; the partitions it led move only then)."""
    return Scenario(name, load, fault, broker="cluster", budget_s=420, recover_s=150)


MATRIX: tuple[Scenario, ...] = (
    Scenario("intake-sigkill", lambda: IntakeLoad(rate=400, seconds=20), KillWorker(), fast=True, budget_s=150),
    Scenario("intake-sigstop", lambda: IntakeLoad(workers=2, rate=300, seconds=40), PauseWorker(seconds=12),
             budget_s=200, max_restarts=STALLED_RUNS),
    Scenario("intake-broker-restart", lambda: IntakeLoad(rate=300, seconds=40), RestartBroker(down_s=5),
             broker="own", budget_s=300, max_restarts=BROKER_RESTART_RUNS),
    frozen("intake-broker-freeze", lambda: IntakeLoad(rate=200, seconds=60), max_restarts=FROZEN_INTAKE_RUNS),
    on_cluster("intake-cluster-broker-kill", lambda: IntakeLoad(rate=200, seconds=45), KillClusterNode(node=2)),
    on_cluster("intake-txn-coordinator-kill", lambda: IntakeLoad(rate=200, seconds=45),
               KillCoordinator("transaction", INTAKE_COORDINATED)),
    on_cluster("intake-group-coordinator-kill", lambda: IntakeLoad(rate=200, seconds=45),
               KillCoordinator("group", INTAKE_COORDINATED)),
    on_cluster("intake-controller-kill", lambda: IntakeLoad(rate=200, seconds=45),
               KillCoordinator("controller", INTAKE_COORDINATED)),
    # the join's rebalance can meet the failover: the revoked worker's last transaction, spanning partitions the dead
    # node led, is not committed within the drain's session timeout and its run restarts (TransactionStuck): 1 in one
    # of three full runs (2026-12-05), nothing lost or repeated
    replace(on_cluster("intake-group-coordinator-kill-join", lambda: IntakeLoad(rate=200, seconds=45),
                       KillCoordinator("group", INTAKE_COORDINATED, join=True)), max_restarts=STALLED_RUNS),
    Scenario("intake-rebalance-storm", lambda: IntakeLoad(rate=300, seconds=55), RebalanceStorm(seconds=30),
             budget_s=240),
    Scenario("notify-provider-outage", lambda: NotifyLoad(events=120, per_second=6, mid_stream=10, env=PROBE_SOON),
             ProviderOutage(seconds=15), fast=True, budget_s=180),
    # progress in every partition (`every_partition`): any delivery was the other worker's own, at once (0.2 s)
    Scenario("notify-sigstop", lambda: NotifyLoad(workers=2, spread=True, events=320, per_second=8, mid_stream=20,
                                                  env=NOTIFY_FAST_GROUP, resend_allowance=SIGKILL_IN_FLIGHT,
                                                  every_partition=True),
             PauseWorker(seconds=14), budget_s=200, max_restarts=STALLED_RUNS),
    Scenario("notify-broker-restart", lambda: NotifyLoad(events=240, per_second=8, mid_stream=20),
             RestartBroker(down_s=5), broker="own", budget_s=300),  # its runs ride the outage out: none ends
    frozen("notify-broker-freeze", lambda: NotifyLoad(events=320, per_second=4, mid_stream=20)),  # rides it out
    Scenario("notify-rebalance-storm", lambda: NotifyLoad(spread=True, events=400, per_second=10, mid_stream=20,
                                                          env={"NOTIFY_ROUTINE_WORKERS": "8"},
                                                          resend_allowance=STORM_KILLS * SIGKILL_IN_FLIGHT,
                                                          every_partition=True),
             RebalanceStorm(seconds=30), budget_s=240),
    Scenario("notify-sigkill", lambda: NotifyLoad(events=300, per_second=100, mid_stream=80, env=SIGKILL_BURST,
                                                  resend_allowance=SIGKILL_IN_FLIGHT), KillWorker(), budget_s=180),
    Scenario("metrics-sigkill", lambda: MetricsLoad(per_second=40, mid_stream=80), KillWorker(), fast=True,
             budget_s=150),
    Scenario("metrics-sigstop", lambda: MetricsLoad(workers=2, per_second=20, mid_stream=60, env=METRICS_FAST_GROUP),
             PauseWorker(seconds=14), budget_s=200, max_restarts=STALLED_RUNS),
    Scenario("metrics-broker-restart", lambda: MetricsLoad(per_second=20, mid_stream=80), RestartBroker(down_s=5),
             broker="own", budget_s=300, max_restarts=BROKER_RESTART_RUNS),  # as intake's: a transaction fails
    frozen("metrics-broker-freeze", lambda: MetricsLoad(per_second=8, mid_stream=80), seconds=65,
           max_restarts=FROZEN_METRICS_RUNS),
    # sending for ~60 s: the storm's 30 s take ~45 s (a killed worker's partitions wait for its 6 s session), and the
    # recovery needs records after the last move to show progress
    Scenario("metrics-rebalance-storm", lambda: MetricsLoad(per_second=8, mid_stream=80, env=METRICS_FAST_GROUP),
             RebalanceStorm(seconds=30), budget_s=240),
    partitioned("intake-partition", lambda: IntakeLoad(workers=2, rate=300, seconds=60), max_restarts=PARTITIONED_RUNS),
    partitioned("intake-partition-short", lambda: IntakeLoad(workers=2, rate=300, seconds=60),
                seconds=PARTITIONED_SHORT_S, max_restarts=PARTITIONED_RUNS),
    partitioned("notify-partition", lambda: NotifyLoad(workers=2, spread=True, events=480, per_second=8, mid_stream=20,
                                                       env=NOTIFY_FAST_GROUP, resend_allowance=SIGKILL_IN_FLIGHT,
                                                       every_partition=True)),
    partitioned("metrics-partition", lambda: MetricsLoad(workers=2, per_second=8, mid_stream=60,
                                                         env=METRICS_FAST_GROUP), max_restarts=PARTITIONED_RUNS),
    on_cluster("notify-group-coordinator-kill", lambda: NotifyLoad(events=240, per_second=8, mid_stream=20),
               KillCoordinator("group", NOTIFY_COORDINATED)),
    on_cluster("notify-controller-kill", lambda: NotifyLoad(events=240, per_second=8, mid_stream=20),
               KillCoordinator("controller", NOTIFY_COORDINATED)),
    on_cluster("metrics-txn-coordinator-kill", lambda: MetricsLoad(per_second=20, mid_stream=80),
               KillCoordinator("transaction", METRICS_COORDINATED)),
    on_cluster("metrics-group-coordinator-kill", lambda: MetricsLoad(per_second=20, mid_stream=80),
               KillCoordinator("group", METRICS_COORDINATED)),
    on_cluster("metrics-controller-kill", lambda: MetricsLoad(per_second=20, mid_stream=80),
               KillCoordinator("controller", METRICS_COORDINATED)),
)

NAMES = tuple(s.name for s in MATRIX)
