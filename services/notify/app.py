"""Wiring: consume canonical topics (read_committed) -> rules -> dispatcher; commit when notifications are done."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from pathlib import Path

import structlog
from aiokafka.partitioner import DefaultPartitioner
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.dossier import DossierStatusChanged
from schemas.notification import ChannelKind, DeadlineAlert, DeadlineMessage, TrackedDossier
from schemas.topics import PARTITIONS, Group
from schemas.wire import UnknownEventType, decode
from services.common.admin import ensure_topics
from services.notify import deadlines, rules
from services.notify.channels.base import Channel
from services.notify.channels.email import Smtp
from services.notify.channels.http import HttpClient, SmsGateway, Webhooks, ZaloZns
from services.notify.delivery import Dispatcher, Outputs
from services.notify.directory import load_directory
from services.notify.ledger import Ledger
from services.notify.offsets import OffsetTracker
from services.notify.settings import NotifySettings
from services.notify.subscribers import load_registry
from services.notify.topics import Names

log = structlog.get_logger("notify")
_PARTITIONER = DefaultPartitioner()  # the same murmur2 the producers of every commune-keyed topic use


class NotifyApp:
    def __init__(self, settings: NotifySettings) -> None:
        self.s, self.names = settings, Names(settings.namespace)
        self.directory = load_directory(settings.directory_file)
        self.registry = load_registry(settings.subscribers_file)
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.stopping = asyncio.Event()
        self.failed = False

    def _channels(self, http: HttpClient) -> dict[ChannelKind, Channel]:
        sms = SmsGateway(http, self.s.sms_url)
        return {
            ChannelKind.SMS: sms, ChannelKind.ZALO: ZaloZns(http, self.s.zalo_url, sms),
            ChannelKind.EMAIL: Smtp(self.s.smtp_host, self.s.smtp_port, self.s.smtp_sender, self.s.provider_timeout_s),
            ChannelKind.WEBHOOK: Webhooks(http, self.registry),
        }

    async def run(self) -> None:
        n = self.names
        await ensure_topics(self.s.bootstrap, n.specs)
        self.producer = AIOKafkaProducer(bootstrap_servers=self.s.bootstrap, acks="all", enable_idempotence=True,
                                         linger_ms=2)
        await self.producer.start()
        http = HttpClient(self.s.provider_timeout_s)
        ledger = Ledger(self.s.bootstrap, n.ledger, self.producer)
        await ledger.start()
        self.dispatcher = Dispatcher(
            self._channels(http), ledger, self.producer, Outputs(n.status, n.dlq), backoff=self.s.backoff(),
            quiet=self.s.quiet_hours(), rates=self.s.rate_per_s, segment_limit=self.s.sms_segment_limit,
            routine_workers=self.s.routine_workers, emergency_workers=self.s.emergency_workers)
        await self.dispatcher.start()
        # Two consumers in the one group: announcements (where emergencies arrive) are never stuck behind a
        # dossier backlog in the same fetch; dossiers, mobile-team events and deadline alerts share the other.
        routine = self._consumer([n.dossier, n.mobile_team, n.alerts], ledger)
        urgent = self._consumer([n.announcement], ledger)
        consumers = [await c for c in (routine, urgent)]
        self.dispatcher.owns = partial(self._owns, consumers[0])
        self.dispatcher.holds = lambda tp: any(tp in c.assignment() for c in consumers)
        log.info("notify.started", namespace=self.s.namespace, directory=str(self.s.directory_file),
                 subscribers=len(self.registry.subscribers))
        tasks = [asyncio.create_task(self._consume(c, throttle=c is consumers[0])) for c in consumers]
        tasks += [asyncio.create_task(self._commit_loop(c)) for c in consumers]
        try:
            await self.stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in consumers:
                with contextlib.suppress(Exception):
                    await self._commit(c)
                await c.stop()
            await self.dispatcher.stop()
            await ledger.stop()
            await http.close()
            await self.producer.stop()

    def _owns(self, consumer: AIOKafkaConsumer, commune: str) -> bool:
        """A commune belongs to the worker holding its dossier-topic partition (keys are communes everywhere)."""
        partitions = list(range(PARTITIONS))
        return TopicPartition(self.names.dossier, _PARTITIONER(commune.encode(), partitions, partitions)) in consumer.assignment()

    async def _consumer(self, topics: list[str], ledger: Ledger) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.s.bootstrap, group_id=self.s.group(Group.NOTIFY.value), enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest", max_poll_records=200)
        await consumer.start()
        consumer.subscribe(topics, listener=_Rebalance(self, consumer, ledger))
        return consumer

    async def _consume(self, consumer: AIOKafkaConsumer, throttle: bool) -> None:
        """Decode -> rules -> dispatcher; pauses (routine consumer only) while the routine backlog is too long."""
        paused = False
        try:
            while not self.stopping.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for record in records:
                        await self._handle(tp, record)
                if not throttle:
                    continue
                backlog = self.dispatcher.routine_backlog
                if not paused and backlog > self.s.max_pending:
                    consumer.pause(*consumer.assignment())
                    paused = True
                elif paused and backlog < self.s.max_pending // 2:
                    consumer.resume(*consumer.paused())
                    paused = False
        except Exception:
            log.exception("notify.consumer_failed")
            self._crash("consumer_failed")
            raise

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord) -> None:  # type: ignore[type-arg]
        """Decode once, derive requests, hand them over; the record is done when they and its tracking are."""
        dossier: TrackedDossier | None = None
        try:
            if tp.topic == self.names.alerts:
                requests = rules.for_alert(DeadlineAlert.model_validate_json(record.value), self.directory)
            else:
                event = decode(record.headers, record.value)
                requests = rules.for_event(event, self.directory, self.registry)
                if isinstance(event, DossierStatusChanged) and self.s.deadlines:
                    dossier = deadlines.tracked(event)
        except (ValidationError, UnknownEventType) as exc:  # canonical topics hold valid events; skip, loudly
            log.error("notify.undecodable", topic=tp.topic, partition=tp.partition, offset=record.offset,
                      error=type(exc).__name__)
            requests = []
        slot = self.tracker.add(tp, record.offset, len(requests) + (dossier is not None))

        def complete() -> None:
            self.tracker.complete(tp, slot)

        if dossier is not None:
            sent = await self.producer.send(self.names.deadlines, DeadlineMessage(dossier=dossier).model_dump_json().encode(),
                                            dossier.commune.encode())
            sent.add_done_callback(
                lambda f: complete() if not f.cancelled() and f.exception() is None else self._crash("deadlines_send_failed"))
        for request in requests:
            await self.dispatcher.submit(request, complete, source=tp)

    def _crash(self, reason: str) -> None:
        log.error("notify.crash", reason=reason)
        self.failed = True
        self.stopping.set()

    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self._commit(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        offsets = {tp: o for tp, o in self.tracker.take_committable().items() if tp in consumer.assignment()}
        if offsets:
            await consumer.commit(offsets)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, app: NotifyApp, consumer: AIOKafkaConsumer, ledger: Ledger) -> None:
        self.app, self.consumer, self.ledger = app, consumer, ledger

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        with contextlib.suppress(Exception):
            await self.app._commit(self.consumer)  # noqa: SLF001
        for tp in revoked:
            self.app.tracker.forget(tp)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.ledger.catch_up()  # see what the previous owner sent before redoing its records


def default_directory() -> Path:
    return Path(__file__).resolve().parents[2] / "infra/notify/directory.example.toml"
