"""The notify shell: canonical topics (read_committed) -> rules -> dispatcher; offsets committed once done.

One run of the worker (`run`): topics checked, producer, ledger (its partitions restored and tailed as input partitions
are assigned, ADR 0020), dispatcher, two consumers in the one group. Every loop is a supervised task; the exit stack
closes everything in reverse order when the run stops or fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from itertools import product
from pathlib import Path
from typing import TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError
from pydantic import ValidationError

from schemas.notification import ChannelKind
from schemas.topics import Group, group_id
from services.common import clients, joining
from services.common.admin import ensure_topics
from services.common.closing import CLOSE_TIMEOUT_S, close_all_within, close_within, start_within
from services.common.lag import LagGauge
from services.common.partitioner import partition_for
from services.common.probe import probe_loop
from services.common.runtime import Supervisor, bounded_stop_s
from services.common.stall import StallWatch
from services.common.stopping import STOPPED, unless_stopped
from services.notify import metrics, tracker
from services.notify.channels.base import Channel
from services.notify.channels.email import Smtp
from services.notify.channels.http import HttpClient, SmsGateway, Webhooks, ZaloZns
from services.notify.directory import load_directory
from services.notify.erasures import NoticeSender
from services.notify.jobs import Outputs
from services.notify.ledger import Layout, Ledger
from services.notify.ledger_feed import LedgerFeed
from services.notify.ledger_store import RocksStores
from services.notify.ledger_upkeep import aligned_partitions, keep_window_ms, prune_loop
from services.notify.offsets import COMMIT_TIMEOUT_S, OffsetTracker
from services.notify.pauses import Pauses
from services.notify.personal import Opener
from services.notify.rebalance import Fence, Listener, Readiness, known_members
from services.notify.records import Records
from services.notify.release import OwnedDispatcher
from services.notify.settings import CONSUMERS, NotifySettings
from services.notify.subscribers import load_registry
from services.notify.topics import Names
from services.notify.zns import load_zns_templates, on_this_host
from services.privacy.settings import PrivacySettings
from services.privacy.store import KeyStore

log = structlog.get_logger("notify")
SERVICE = "notify"
CLIENT_ID = "commune-bus-notify"
COMMIT_EVERY_S = 0.5
T = TypeVar("T")


def _loaded(file: str, path: Path | None, load: Callable[[Path | None], T]) -> T:
    """The directory or subscriber file, or the run ends (not restarted: the file stays wrong) having logged each
    refusal's place and reason, never its value (a phone, a URL's password): the crash log names only the error."""
    try:
        return load(path)
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()]
        log.critical("notify.file_refused", file=file, path=str(path), errors=errors)
        raise


class NotifyApp:
    def __init__(self, settings: NotifySettings, supervisor: Supervisor,
                 privacy: PrivacySettings | None = None) -> None:
        self.s, self.sup, self.names = settings, supervisor, Names(settings.namespace)
        self.privacy = privacy
        self.directory = _loaded("directory", settings.directory_file, load_directory)
        self.registry = _loaded("subscribers", settings.subscribers_file, load_registry)
        for sub, outcome in product(self.registry.subscribers, metrics.WEBHOOK_OUTCOMES):
            metrics.WEBHOOK_CALLS.labels(sub.name, outcome)  # exported from 0: increase() sees a first refusal
        self.zns = _loaded("zns_templates", settings.zns_templates_file, load_zns_templates)
        if settings.zns_templates_file is None and not on_this_host(settings.zalo_url):  # Zalo knows no cb-100
            log.warning("notify.zns_templates_local", zalo_url=settings.zalo_url, hint="NOTIFY_ZNS_TEMPLATES_FILE")
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.pauses: dict[str, Pauses] = {}
        """Per consumer (routine, urgent): why its partitions are paused."""

    def _channels(self, http: HttpClient) -> dict[ChannelKind, Channel]:
        sms = SmsGateway(http, self.s.sms_url)
        return {
            ChannelKind.SMS: sms, ChannelKind.ZALO: ZaloZns(http, self.s.zalo_url, sms, self.zns),
            ChannelKind.EMAIL: Smtp(self.s.smtp_host, self.s.smtp_port, self.s.smtp_sender, self.s.provider_timeout_s),
            ChannelKind.WEBHOOK: Webhooks(http, self.registry),
        }

    async def run(self) -> None:
        n, spawn = self.names, self.sup.spawn
        self.sup.health.set_ready(False, "starting")
        await ensure_topics(self.s, n.specs)
        async with AsyncExitStack() as stack:
            # a sent notification's ledger entry waits out a broker outage instead of failing the run (ADR 0012)
            producer = clients.producer(self.s, client_id=CLIENT_ID, linger_ms=2,
                                        request_timeout_ms=self.s.write_timeout_ms)
            # closed however its start ends: one that fails or is cancelled part way leaves a connected client
            stack.push_async_callback(close_within, SERVICE, "producer", producer.stop)
            # StartUnanswered (a KafkaError): the run restarts; a stop ends the wait for a producer id at once
            if await unless_stopped(start_within(SERVICE, "producer", producer), self.sup.stop) is STOPPED:
                return
            http = HttpClient(self.s.provider_timeout_s)
            stack.push_async_callback(http.close)

            opener = await self._opener(stack)
            ledger, feed = await self._ledger(stack, producer)
            dispatcher = OwnedDispatcher(
                self._channels(http), ledger, producer, Outputs(n.status, n.dlq), spawn=spawn,
                backoff=self.s.backoff(), quiet=self.s.quiet_hours(), rates=self.s.rate_per_s,
                segment_limit=self.s.sms_segment_limit, routine_workers=self.s.routine_workers,
                emergency_workers=self.s.emergency_workers, opener=opener, max_segments=self.s.sms_max_segments,
                legacy_ids=self.s.legacy_notification_ids, park_s=self.s.park_s,
                emergency_park_s=self.s.emergency_park_s(),
                release_limit=max(1, self.s.max_pending // 4),  # released under a quarter: the input keeps the rest
                circuit=(self.s.circuit_failures, self.s.circuit_probe_s) if self.s.circuit_failures else None)
            ledger.commune_of = dispatcher.commune_of
            dispatcher.start()
            stack.push_async_callback(dispatcher.stop)

            # Two consumers in the one group: announcements (where emergencies arrive) and replayed dead letters (ADR
            # 0033: a replayed emergency must not wait in a paused partition) are never stuck behind a dossier backlog
            # in the same fetch; dossiers, mobile-team events and deadline alerts share the other.
            readiness = Readiness(self.sup.health, ("routine", "urgent"))
            stalls = StallWatch(self.s.stall_limit_s)
            routine_topics = {n.dossier, n.mobile_team, n.alerts}
            urgent_topics = {n.announcement, n.replays}
            members: dict[str, AIOKafkaConsumer] = {}  # a call waits while its consumer may be no member
            consumer_of = partial(_consumer_of, routine_topics, urgent_topics)
            fence = Fence(readiness, stalls, consumer_of, known_members(members, self.s.heard_limit_s()))
            dispatcher.gate = fence
            stack.push_async_callback(_cancel, [spawn("stall-watch", stalls.watch()),
                                                spawn("broker-probe", probe_loop(feed.reachable, readiness.broker,
                                                                                 health=self.sup.health))])
            opened: list[tuple[str, Callable[[], Awaitable[None]]]] = []  # closed together: each may wait out a join
            stack.push_async_callback(close_all_within, SERVICE, opened)
            routine = await self._consumer(stack, opened, "routine", sorted(routine_topics), feed, readiness, fence)
            urgent = await self._consumer(stack, opened, "urgent", sorted(urgent_topics), feed, readiness, fence)
            consumers = (routine, urgent)
            members.update(routine=routine, urgent=urgent)
            dossier_partitions = len(await producer.partitions_for(n.dossier))
            dispatcher.owns = partial(self._owns, routine, dossier_partitions)
            # deferrals are released once the routine consumer's ledger has caught up (a released job would hold an
            # emergency sender at the fence meanwhile, ahead of the urgent consumer's emergencies)
            dispatcher.owns_partition = lambda p: (readiness.settled_for("routine").is_set()
                                                   and TopicPartition(n.dossier, p) in routine.assignment())
            dispatcher.source_of = lambda p: TopicPartition(n.dossier, p)
            dispatcher.holds = lambda tp: any(tp in c.assignment() for c in consumers)
            records = Records(self.s, self.names, self.directory, self.registry, producer, dispatcher, self.tracker,
                              self.sup)
            records.partitions = dossier_partitions  # the ledger's too (checked aligned at start, ADR 0020)
            stack.push_async_callback(self._final_commit, consumers)
            # unwound before the final commit and the consumers leaving, once they are cancelled (ADR 0012)
            stack.push_async_callback(fence.closed, self.s.stop_drain_s())
            stack.push_async_callback(_cancel, [
                spawn("routine-consumer", records.consume(routine, self.pauses["routine"], "routine")),
                spawn("urgent-consumer", records.consume(urgent, self.pauses["urgent"], "urgent")),
                spawn("routine-commits", self._commit_loop(routine)),
                spawn("urgent-commits", self._commit_loop(urgent)),
                spawn("consumer-lag", LagGauge(SERVICE).watch(consumers)),
                *self._erasure_notices(http),
            ])
            log.info("notify.started", namespace=self.s.namespace, directory=str(self.s.directory_file),
                     subscribers=len(self.registry.subscribers))
            await self.sup.stop.wait()

    def _erasure_notices(self, http: HttpClient) -> list[asyncio.Task[None]]:
        """One supervised sender per webhook subscriber that receives applicants' data (ADR 0035)."""
        webhooks = Webhooks(http, self.registry)
        return [self.sup.spawn(f"erasure-notices-{sub.name}", NoticeSender(
                    self.s, self.names.erasures, self.s.namespace, sub, webhooks, self.s.backoff(),
                    self.s.session_timeout_ms, self.s.heartbeat_interval_ms).run())
                for sub in self.registry.subscribers if sub.include_personal_data]

    async def _ledger(self, stack: AsyncExitStack, producer: AIOKafkaProducer) -> tuple[Ledger, LedgerFeed]:
        """The partition-aligned ledger (stores deleted when the run ends), its tail and its pruning, supervised."""
        n = self.names
        partitions = await aligned_partitions(producer, n.ledger, [n.dossier, n.mobile_team, n.announcement,
                                                                   n.alerts, n.replays])
        stores = RocksStores(self.s.state_dir)
        stack.callback(stores.close)
        layout = Layout(partitions, producer, stores, keep_ms=keep_window_ms(self.s.ledger_keep_days))
        ledger = Ledger(n.ledger, producer, layout=layout)
        feed = LedgerFeed(self.s, ledger)
        stack.push_async_callback(close_within, SERVICE, "ledger-tail", feed.close)
        await feed.open()
        stack.push_async_callback(_cancel, [self.sup.spawn("ledger-tail", feed.follow()),
                                            self.sup.spawn("ledger-prune", prune_loop(ledger, self.s))])
        return ledger, feed

    async def _opener(self, stack: AsyncExitStack) -> Opener:
        """Opens contacts at delivery: applicants' through the key store (tailed for the whole run), staff's from the
        directory. Without a key-encryption key, sealed contacts cannot be opened: those notifications are skipped."""
        if self.privacy is None or not self.privacy.configured:
            log.warning("notify.no_privacy_keys", effect="applicant notifications are skipped as erased")
            return Opener(self.directory)
        # keys on disk, the ones used last in memory (ADR 0034)
        keyring = self.privacy.service_keyring(f"{self.s.namespace}-{CLIENT_ID}")
        stack.callback(keyring.close)  # after the key store has stopped (the stack unwinds in reverse)
        # the applicants' key topic only: everything notify opens is sealed under an applicant's permanent key (the
        # canonical events' applicants, copied into its ledger, dead letters and replays) or already erased, and their
        # erasure marks are there; the dead letters' expiring keys seal intake's dead letters alone, and junk records
        # naming new applicants filled its memory with them (soak audit, ADR 0044)
        store = KeyStore(self.s, self.s.namespace, keyring, client_id=f"{CLIENT_ID}-keys", applicants_only=True)
        stack.push_async_callback(close_within, SERVICE, "key-store", store.stop)  # a restore that fails too
        await store.start()
        stack.push_async_callback(_cancel, [self.sup.spawn("key-store", store.run())])
        return Opener(self.directory, keyring, store.refresh)

    def _owns(self, consumer: AIOKafkaConsumer, partitions: int, commune: str) -> bool:
        """A commune belongs to the worker holding its dossier-topic partition (keys are communes everywhere)."""
        return TopicPartition(self.names.dossier, partition_for(commune.encode(), partitions)) in consumer.assignment()

    async def _consumer(self, stack: AsyncExitStack, opened: list[tuple[str, Callable[[], Awaitable[None]]]], name: str,
                        topics: list[str], feed: LedgerFeed, readiness: Readiness, fence: Fence) -> AIOKafkaConsumer:
        consumer = clients.consumer(self.s, client_id=f"{CLIENT_ID}-{name}",
                                    group_id=group_id(Group.NOTIFY, self.s.namespace), max_poll_records=200,
                                    session_timeout_ms=self.s.session_timeout_ms,
                                    rebalance_timeout_ms=self.s.rebalance_timeout_ms(),
                                    heartbeat_interval_ms=self.s.heartbeat_interval_ms)
        opened.append((f"{name}-consumer", partial(joining.stop_member, consumer)))  # mid-join: leaves at once
        await consumer.start()
        pauses = self.pauses[name] = Pauses(consumer)
        listener = Listener(self.sup.fail, name, readiness, fence, commit=partial(self._commit, consumer),
                            forget=self.tracker.forget, hold=partial(feed.hold, name),
                            pause=pauses.hold, resume=pauses.release,
                            spawn=self.sup.spawn_if_running, drain_s=self.s.drain_s)
        consumer.subscribe(topics, listener=listener)
        stack.push_async_callback(listener.stop)  # before the ledger feed closes under a catch-up
        return consumer

    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await asyncio.sleep(COMMIT_EVERY_S)
            await self._commit(consumer, "loop")

    async def _commit(self, consumer: AIOKafkaConsumer, when: str) -> None:
        """Commit what is done on `consumer`'s partitions, within `COMMIT_TIMEOUT_S`. A refusal (the group moved
        on) or no answer in time (the broker is gone) is logged and counted, and the offsets are kept to commit
        later: what is never committed is consumed again, and the ledger skips what it holds as done."""
        offsets = self.tracker.take_committable(consumer.assignment())
        if not offsets:
            return
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await consumer.commit(offsets)
        except (CommitFailedError, TimeoutError) as exc:
            self.tracker.restore(offsets)
            metrics.COMMIT_FAILURES.labels(when).inc()
            log.warning("notify.commit_refused" if isinstance(exc, CommitFailedError) else "notify.commit_timed_out",
                        when=when, partitions=len(offsets))
            return
        self.sup.health.committed()

    async def _final_commit(self, consumers: tuple[AIOKafkaConsumer, ...]) -> None:
        """On an orderly stop only: after a failure the group may be gone, and the next owner redoes the rest."""
        if not self.sup.stop.is_set():
            return
        for consumer in consumers:
            await self._commit(consumer, "stop")


def _consumer_of(routine: set[str], urgent: set[str], source: object) -> str | None:
    """Which of the worker's consumers reads the input partition `source` (None: not known, `Fence` waits for both)."""
    topic = source.topic if isinstance(source, TopicPartition) else None
    return "routine" if topic in routine else "urgent" if topic in urgent else None


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def stop_budget_s(settings: NotifySettings) -> float:
    """The longest SIGTERM can take (infra/compose.yaml's `stop_grace_period` is at least this): the drain of the
    calls under way (`NotifySettings.stop_drain_s`; skipped in a broker outage), the final commits
    (`COMMIT_TIMEOUT_S` per consumer), then each client's stop within `CLOSE_TIMEOUT_S`, one after the other as the
    run's exit stack unwinds (the erasure notices' consumers, all at once, ADR 0035; the two consumers, both at once;
    the key store, the ledger tail, the producer); then the stop's last step waits for the deadline tracker, told to
    stop when the worker's stop began (`tracker.STOP_TIMEOUT_S`, then it is killed); all at most the runtime's
    `stop_deadline_s` (`__main__`'s `on_stop`, inside the stop, where a second signal is still a forced stop)."""
    clients_ = 5
    own = settings.stop_drain_s() + CONSUMERS * COMMIT_TIMEOUT_S + clients_ * CLOSE_TIMEOUT_S
    return bounded_stop_s(settings, own + (tracker.STOP_TIMEOUT_S if settings.deadlines else 0.0))


async def run(supervisor: Supervisor, settings: NotifySettings, privacy: PrivacySettings | None = None) -> None:
    """One run of the notify worker (the runtime's `Worker`)."""
    await NotifyApp(settings, supervisor, privacy).run()
