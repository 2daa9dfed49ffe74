"""A stop asked for while a worker's consumer waits in its group join ends the run at once, not when the join ends
(`services.common.joining`; real broker, intake's, metrics' and notify's deadline tracker's workers in process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from services.common import clients, closing
from services.common.health import Health
from services.common.runtime import Supervisor, supervise
from services.common.settings import KafkaConnection
from services.intake.settings import IntakeSettings
from services.intake.validate import Topics
from services.intake.worker import IntakeWorker
from services.metrics.settings import MetricsSettings
from services.metrics.worker import MetricsWorker
from tests import naming
from tests.waiting import eventually_async

pytestmark = pytest.mark.kafka
HOLD_MS = 60_000
"""The stalled member's session and rebalance timeouts: the join it holds up would end after this."""


class Stalled(ConsumerRebalanceListener):
    """A member that stalls at the next rebalance (a paused process): its revocation never returns, so it never
    rejoins and the join of every other member waits for it."""

    def __init__(self) -> None:
        self.assigned, self.rebalancing, self.release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def on_partitions_revoked(self, revoked: AbstractSet[TopicPartition]) -> None:
        if self.assigned.is_set():
            self.rebalancing.set()
            await self.release.wait()

    async def on_partitions_assigned(self, assigned: AbstractSet[TopicPartition]) -> None:
        self.assigned.set()


async def group_state(conn: KafkaConnection, group: str) -> str:
    admin = clients.admin(conn)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        return str(response.groups[0][2])
    finally:
        await admin.close()


Started = tuple[str, str, list[str], Callable[[Supervisor], Awaitable[None]]]
"""A worker under test: its service's name, its group, the topics it consumes, its runtime worker."""


def intake(bootstrap: str, namespace: str, _: Path) -> Started:
    settings = IntakeSettings(bootstrap=bootstrap, namespace=namespace, seal_personal_data=False)

    async def run(supervisor: Supervisor) -> None:
        await IntakeWorker(settings, supervisor).run()

    return "intake", settings.group_id, list(Topics.of(namespace, None).family_of), run


def metrics(bootstrap: str, namespace: str, state: Path) -> Started:
    settings = MetricsSettings(bootstrap=bootstrap, namespace=namespace, state_dir=state)
    worker = MetricsWorker(settings)
    return "metrics", settings.group_id, list(worker.names.family_of), worker.run


def deadlines(bootstrap: str, namespace: str, state: Path) -> Started:
    """notify's deadline tracker (before, its join was waited for: a stop came after the stalled member's timeout)."""
    from schemas.topics import Group, group_id
    from services.notify.deadline_settings import DeadlineSettings
    from services.notify.deadline_worker import DeadlineWorker
    from services.notify.settings import NotifySettings

    worker = DeadlineWorker(NotifySettings(bootstrap=bootstrap, namespace=namespace), DeadlineSettings(state_dir=state))
    return "notify-deadlines", group_id(Group.NOTIFY_DEADLINES, namespace), [worker.names.deadlines], worker.run


@pytest.mark.parametrize("service", [intake, metrics, deadlines], ids=["intake", "metrics", "deadlines"])
async def test_a_stop_during_the_group_join_ends_the_run_before_the_join(
        kafka_bootstrap: str, tmp_path: Path, service: Callable[[str, str, Path], Started]) -> None:
    """A member holds the group's join up (stalled in its rebalance); the worker's stop, asked for while its
    consumer waits in that join, ends its run while the group still waits for the stalled member. Before, the run
    went on until the broker dropped that member (its rebalance timeout): the join then completed and the worker was
    assigned every partition, only to give them back."""
    name, group, topics, run = service(kafka_bootstrap, "j" + naming.unique(), tmp_path)
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    health, stop = Health(f"{name}-join-test"), asyncio.Event()
    running = asyncio.create_task(supervise(health.service, run, stop, health))
    stalled = Stalled()
    holder = clients.consumer(conn, client_id="tests-join-holder", group_id=group, session_timeout_ms=HOLD_MS,
                              rebalance_timeout_ms=HOLD_MS, heartbeat_interval_ms=1000,
                              # the workers' assignors (intake's and metrics' range, the tracker's aiokafka's default)
                              partition_assignment_strategy=(RangePartitionAssignor, RoundRobinPartitionAssignor))
    try:
        await eventually_async(lambda: health.ready, timeout=60, what=f"{name} ready")  # its topics exist
        stop.set()
        await asyncio.wait_for(running, timeout=60)
        # the holder joins alone, then the worker joins behind it and stalls on it
        stop.clear()
        holder.subscribe(topics, listener=stalled)
        await holder.start()
        await asyncio.wait_for(stalled.assigned.wait(), timeout=60)
        running = asyncio.create_task(supervise(health.service, run, stop, Health(health.service)))
        await asyncio.wait_for(stalled.rebalancing.wait(), timeout=60)  # the worker's JoinGroup is at the broker
        stop.set()
        await asyncio.wait_for(running, timeout=2 * HOLD_MS / 1000)
        assert await group_state(conn, group) == "PreparingRebalance", "the join completed before the run ended"
    finally:
        stalled.release.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await holder.stop()


@pytest.mark.parametrize("service", [intake, metrics, deadlines], ids=["intake", "metrics", "deadlines"])
async def test_a_stop_during_a_rejoin_mid_run_ends_the_run_before_the_join(
        kafka_bootstrap: str, tmp_path: Path, service: Callable[[str, str, Path], Started]) -> None:
    """The worker holds partitions; a member that joined after it stalls in the next rebalance (a third member's
    join), and the worker's rejoin waits behind it. Its stop ends the run while the group still waits, the worker
    gone from it. Before, its loop waited on a fetch that waits for the rejoin (aiokafka's `getmany` ignores its
    timeout while the group rebalances), and the consumer's stop on the join: the run went on until the broker
    dropped the stalled member (a deployed worker: `service.stop_forced` at its stop deadline, no leave, no close)."""
    name, group, topics, run = service(kafka_bootstrap, "r" + naming.unique(), tmp_path)
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    health, stop = Health(f"{name}-rejoin-test"), asyncio.Event()
    stalled = Stalled()
    assignors = (RangePartitionAssignor, RoundRobinPartitionAssignor)
    holder = clients.consumer(conn, client_id="tests-rejoin-holder", group_id=group, session_timeout_ms=HOLD_MS,
                              rebalance_timeout_ms=HOLD_MS, heartbeat_interval_ms=1000,
                              partition_assignment_strategy=assignors)
    trigger = clients.consumer(conn, client_id="tests-rejoin-trigger", group_id=group, session_timeout_ms=HOLD_MS,
                               rebalance_timeout_ms=HOLD_MS, partition_assignment_strategy=assignors)
    running = asyncio.create_task(supervise(health.service, run, stop, health))
    joining_trigger: asyncio.Future[None] | None = None
    try:
        await eventually_async(lambda: health.ready, timeout=60, what=f"{name} ready")  # assigned, restored
        holder.subscribe(topics, listener=stalled)
        await holder.start()
        await asyncio.wait_for(stalled.assigned.wait(), timeout=60)  # the worker rejoined with it
        trigger.subscribe(topics)
        joining_trigger = asyncio.ensure_future(trigger.start())  # the next rebalance: the holder stalls in it
        await asyncio.wait_for(stalled.rebalancing.wait(), timeout=60)
        # the worker told of the rebalance (its next heartbeat) has given its partitions up: not ready, rejoining
        await eventually_async(lambda: not health.ready, timeout=60, what=f"{name} revoked")
        await asyncio.sleep(1)  # its JoinGroup sent (nothing to wait on)
        stopped_at = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, timeout=20)  # the join would end after HOLD_MS
        # its consumer leaves at once (`joining.stop_member`): the tracker's plain `stop` waited for the join until
        # its close was given up (`client.stop_failed`, 10 s; review)
        assert time.monotonic() - stopped_at < closing.CLOSE_TIMEOUT_S, "the consumer's stop waited for the join"
        assert await group_state(conn, group) == "PreparingRebalance", "the join completed before the run ended"
    finally:
        stalled.release.set()
        stop.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        if joining_trigger is not None:
            joining_trigger.cancel()
            await asyncio.gather(joining_trigger, return_exceptions=True)
        for consumer in (trigger, holder):
            await consumer.stop()


async def test_a_member_stopped_mid_rejoin_leaves_at_once(kafka_bootstrap: str) -> None:
    """A member that held partitions is stopped while its rejoin waits behind a stalled member (notify stopped
    mid-rebalance: 10 s, its consumers' stops given up): `joining.stop_member` tells the group it leaves, on a
    connection of its own, and the stop ends while the group still waits for the stalled member, without this one."""
    from aiokafka.admin import NewTopic

    from services.common import joining

    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    topic, group = "jl" + naming.unique(), "jlg" + naming.unique()
    admin = clients.admin(conn)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 6, 1)])
    finally:
        await admin.close()
    stalled = Stalled()
    member = clients.consumer(conn, client_id="tests-join-member", group_id=group, heartbeat_interval_ms=1000)
    holder = clients.consumer(conn, client_id="tests-join-holder", group_id=group, session_timeout_ms=HOLD_MS,
                              rebalance_timeout_ms=HOLD_MS, heartbeat_interval_ms=1000)
    trigger = clients.consumer(conn, client_id="tests-join-trigger", group_id=group, session_timeout_ms=HOLD_MS,
                               rebalance_timeout_ms=HOLD_MS)
    joining_trigger: asyncio.Future[None] | None = None
    try:
        member.subscribe([topic])
        await member.start()
        holder.subscribe([topic], listener=stalled)
        await holder.start()  # the member rejoins with it: a generation, partitions
        await asyncio.wait_for(stalled.assigned.wait(), timeout=60)
        await eventually_async(lambda: bool(member.assignment()), timeout=60, what="the member assigned")
        trigger.subscribe([topic])
        joining_trigger = asyncio.ensure_future(trigger.start())  # the next rebalance: the holder stalls in it
        await asyncio.wait_for(stalled.rebalancing.wait(), timeout=60)
        coordinator = getattr(member, "_coordinator")  # noqa: B009  (aiokafka's, private)
        await eventually_async(lambda: joining._revoked_and_joining(coordinator), timeout=60,
                               what="the member revoked, rejoining")
        await asyncio.wait_for(joining.stop_member(member), timeout=HOLD_MS / 2000)  # not the stalled join's end
        assert await group_state(conn, group) == "PreparingRebalance", "the join completed before the stop ended"
    finally:
        stalled.release.set()
        if joining_trigger is not None:
            joining_trigger.cancel()
            await asyncio.gather(joining_trigger, return_exceptions=True)
        for consumer in (trigger, holder, member):
            await consumer.stop()
