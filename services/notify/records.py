"""From consumed records to notifications: decode once, apply the rules, hand requests to the dispatcher.

A record's offset becomes committable once every notification it gave (and, for
dossiers with a due date, its state sent to the deadline tracker) is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from pydantic import ValidationError

from schemas import wire
from schemas.deadletter import Reason, Rejection, internal_error
from schemas.lookup import shown_trace_id
from schemas.notification import DeadlineAlert, DeadlineMessage, NotificationRequest, TrackedDossier
from services.common.partitioner import partition_for
from services.common.runtime import Supervisor
from services.notify import metrics, replays, rules
from services.notify.delivery import Dispatcher
from services.notify.directory import Directory
from services.notify.offsets import OffsetTracker
from services.notify.pauses import Pauses
from services.notify.settings import NotifySettings
from services.notify.subscribers import Registry
from services.notify.topics import Names

log = structlog.get_logger("notify")
Lane = Literal["routine", "urgent"]
"""Notify's two consumers (`app.py`)."""
URGENT_HEADROOM = 2
"""The urgent consumer pauses for routine jobs only once they are this many times `max_pending` (`Records.throttle`)."""
REPLAY_HEADROOM = 1.5
"""The urgent consumer pauses its replay partitions alone once the routine jobs held are this many times `max_pending`
(`Records.replay_throttle`): above the routine consumer's limit, so a dossier backlog alone does not hold a replayed
emergency, and below `URGENT_HEADROOM`, so a large replay of routine letters does not pause the announcements."""
Derived = tuple[list[NotificationRequest], TrackedDossier | None]
"""A record's notification requests and, for a dossier with a due date, its state for the deadline tracker."""


def _nobody(rule: str, commune: str, event_type: str, trace_id: str | None) -> None:
    """A rule matched and found nobody to tell: logged (a directory gap is a warning; an applicant who left no
    contact is expected, info) and counted by rule. Never silent, and no personal data: codes and the trace id."""
    level = log.info if rule in rules.APPLICANT_RULES else log.warning
    level("notify.no_recipient", rule=rule, commune=commune, event_type=event_type, trace_id=trace_id)
    metrics.NO_RECIPIENT.labels(rule).inc()


class DeadlineSendFailed(Exception):
    """A dossier state for the deadline tracker was not acknowledged: its record must not be committed."""


class Records:
    def __init__(self, settings: NotifySettings, names: Names, directory: Directory, registry: Registry,
                 producer: AIOKafkaProducer, dispatcher: Dispatcher, tracker: OffsetTracker[TopicPartition],
                 supervisor: Supervisor) -> None:
        self.s, self.names, self.directory, self.registry = settings, names, directory, registry
        self.producer, self.dispatcher, self.tracker, self.sup = producer, dispatcher, tracker, supervisor
        self.partitions: int | None = None
        """The inputs' (and ledger's) partition count, set by the app: a replayed request must be on its commune's."""

    async def consume(self, consumer: AIOKafkaConsumer, pauses: Pauses, lane: Lane) -> None:
        """Decode -> rules -> dispatcher; pauses while the backlog `lane` watches is over its limit (resumes under half
        of it), through `pauses`, which also holds partitions whose ledger is catching up."""
        throttles: list[tuple[str | None, Callable[[], int], int]] = [(None, *self.throttle(lane))]
        if lane == "urgent":
            throttles.append((self.names.replays, *self.replay_throttle()))
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            # getmany returns nothing while a rebalance is under way (it waits for the new assignment), so these
            # records are of the assignment as it stands: a revocation from now on makes them stale
            fetched = {tp: self.tracker.epoch(tp) for tp in batch}
            for tp, records in batch.items():
                for i, record in enumerate(records):
                    if not await self.handle(tp, record, fetched[tp]):
                        log.info("notify.revoked_mid_batch", topic=tp.topic, partition=tp.partition,
                                 offset=record.offset, left=len(records) - i)
                        break
            for topic, backlog, limit in throttles:
                held = backlog()
                if held > limit:
                    pauses.throttle(True, topic)
                elif held < limit // 2:
                    pauses.throttle(False, topic)
                else:
                    pauses.apply()  # partitions assigned meanwhile follow the throttle as it stands

    def throttle(self, lane: Lane) -> tuple[Callable[[], int], int]:
        """What a consumer's pause watches, and its limit, `max_pending`. Routine (dossiers, mobile teams, alerts):
        the routine jobs held, queued or waiting for a retry. Urgent (announcements, where emergencies arrive, and
        replayed dead letters): the emergency jobs held, or the routine ones beyond `URGENT_HEADROOM` times the limit
        (routine announcements and replays come through it too): it never paused, so a flood of announcements behind
        a slow provider filled memory (audit: 59,864 jobs, 198 MB). The routine consumer's own jobs, retries included,
        stay near the limit (it pauses there), so they alone never pause the urgent one (review: a routine provider
        down held storm warnings unread while dossiers flowed); routine announcements waiting for retries beyond it
        do, by design: without that bound a provider outage let them grow without end (second review asked; kept)."""
        d = self.dispatcher
        if lane == "routine":
            return lambda: d.routine_backlog, self.s.max_pending
        return lambda: max(d.emergency_backlog, d.routine_backlog // URGENT_HEADROOM), self.s.max_pending

    def replay_throttle(self) -> tuple[Callable[[], int], int]:
        """What pauses the urgent consumer's replay partitions alone, and its limit: the routine jobs held past
        `REPLAY_HEADROOM` times `max_pending`. Replays are mostly routine letters, thousands at a time after an
        outage: under the urgent consumer's own throttle they filled the routine lane past `URGENT_HEADROOM` times the
        limit and paused it whole, so a new storm warning waited for the replay's backlog to drain (review)."""
        d = self.dispatcher
        return lambda: int(d.routine_backlog / REPLAY_HEADROOM), self.s.max_pending

    def derive(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> Derived:
        """The record's notification requests and, for a dossier with a due date, its state for the tracker.

        Never raises: a record that is no valid event (or meets a bug in the rules) is skipped with its reason,
        logged and counted, and its offset is committed like any other: one record cannot stop the partition.
        """
        if tp.topic == self.names.alerts:
            try:
                alert = DeadlineAlert.model_validate_json(record.value or b"")
                requests = rules.for_alert(alert, self.directory)
            except ValidationError:
                return self._skip(tp, record, Reason.INVALID_FIELD.value, "alert")
            except Exception as exc:  # a bug met by one alert
                return self._skip(tp, record, Reason.INTERNAL_ERROR.value, internal_error(exc).message)
            if not requests:
                _nobody(rules.alert_rule(alert), alert.commune, f"deadline.{alert.kind.value}", None)
            return requests, None
        if tp.topic == self.names.replays:  # a dead letter sent again, under its new id (ADR 0033)
            try:
                request = replays.request_of(record.value)
            except ValueError:
                return self._skip(tp, record, Reason.INVALID_FIELD.value, "replay")
            # on another partition than its commune's (kcat's own partitioner, say), its done entry would go to a
            # ledger partition another worker may hold: a copy could be sent twice (review); notify may not move it
            if self.partitions is not None and partition_for(request.commune.encode(), self.partitions) != tp.partition:
                return self._skip(tp, record, Reason.INVALID_FIELD.value, "replay_misplaced")
            return [request], None
        derived = rules.for_record(record.headers, record.value, self.directory, self.registry, track=self.s.deadlines)
        if isinstance(derived, Rejection):
            return self._skip(tp, record, derived.reason.value, derived.field)
        if (event := derived.event) is not None:
            for rule in derived.unaddressed:
                _nobody(rule, event.commune, event.type, shown_trace_id(event.traceparent, event.source, event.id))
        return derived.requests, derived.tracked

    @staticmethod
    def _skip(tp: TopicPartition, record: ConsumerRecord[bytes, bytes], reason: str, detail: str) -> Derived:
        """Logged with the record's trace id when its `ce_traceparent` header holds a valid one (metadata only)."""
        parent, source, event_id = (wire.lenient_text(next((v for k, v in record.headers if k == name), b""))
                                    for name in ("ce_traceparent", "ce_source", "ce_id"))
        log.error("notify.record_skipped", topic=tp.topic, partition=tp.partition, offset=record.offset,
                  reason=reason, detail=detail, trace_id=shown_trace_id(parent, source, event_id))
        metrics.SKIPPED.labels(reason).inc()
        return [], None

    async def handle(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], epoch: int) -> bool:
        """Hand the record's requests over; the record is done when they and its tracking are. False if its partition
        was revoked since its fetch (`epoch`: the tracker's then), before or while it was handed over: the rest is
        neither handed over nor tracked, and the partition's next owner (this worker again, maybe, from a fresh
        fetch) redoes it from the revocation's commit."""
        if self.tracker.epoch(tp) != epoch:
            return False
        requests, dossier = self.derive(tp, record)
        slot = self.tracker.add(tp, record.offset, len(requests) + (dossier is not None))

        def complete() -> None:
            self.tracker.complete(tp, slot)

        if dossier is not None:
            message = DeadlineMessage(dossier=dossier).model_dump_json().encode()
            sent = await self.producer.send(self.names.deadlines, message, dossier.commune.encode())

            def settled(future: asyncio.Future[RecordMetadata]) -> None:
                if future.cancelled():
                    if not self.sup.stop.is_set():
                        self.sup.fail(DeadlineSendFailed("cancelled"))
                elif (exc := future.exception()) is not None:
                    self.sup.fail(exc)
                else:
                    complete()

            sent.add_done_callback(settled)
        for request in requests:
            if self.tracker.epoch(tp) != epoch:  # revoked while a write for the one before was acknowledged
                return False
            await self.dispatcher.submit(request, complete, source=tp)
        return True
