"""Erasure notices to the webhook subscribers that receive applicants' data (ADR 0035).

A subscriber with `include_personal_data` holds applicants' data in clear (each webhook of a dossier event opens its
applicant, with the pseudonymous `subject`), so an erasure must reach it: each notice on commune.privacy.erasures
(written in the erasure's transaction) becomes a signed webhook, a CloudEvent `NOTICE_TYPE` naming the subject.

One consumer group per such subscriber (`commune-bus.notify.erasures.<name>`, ACL by prefix), so a subscriber that
refuses or is down holds back its own notices only. A notice is retried, with capped back-off, until the subscriber
takes it: an erasure is not given up (`notify_erasure_notices_waiting` and an alert say that one waits); its offset
is committed once taken. A notice sent again (a crash or a rebalance before the commit) carries the same Webhook-Id,
derived from the erasure and the subscriber, for the subscriber to drop as a repeat. A record that is no notice is
skipped, logged and counted: it cannot stop the others; one with members a newer schema added is read (`read_notice`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from schemas.deadletter import internal_error
from schemas.notification import Audience, ChannelKind, NotificationKind, NotificationRequest, Recipient
from schemas.personal import ERASED_EVENT_SOURCE, ERASED_EVENT_TYPE, ApplicantErased, ErasedSubject, ErasureNotice
from schemas.topics import NOTIFY_ERASURE_GROUPS, namespaced
from services.common import clients
from services.common.closing import close_within, retrieved
from services.common.settings import KafkaConnection
from services.notify import metrics
from services.notify.channels.base import DeliveryError, compose
from services.notify.channels.http import Webhooks
from services.notify.offsets import COMMIT_TIMEOUT_S
from services.notify.policy import Backoff, notification_id
from services.notify.subscribers import Subscriber

log = structlog.get_logger("notify")
NOTICE_TYPE = ERASED_EVENT_TYPE
NOTICE_SOURCE = ERASED_EVENT_SOURCE
MAX_POLL_INTERVAL_MS = 300_000
"""The notice consumer's `max.poll.interval.ms` (aiokafka's default, set here because the wait below depends on it):
a member that does not poll for this long leaves its group."""
JOIN_WAIT_S = 60.0
"""How long a sender's consumer may take to join its group before it is said to wait (a join waits for every member,
up to a stalled one's timeout; one whose coordinator is not available waits for ever)."""
WAIT_SHARE = 0.5
"""How long after its poll a notice's call and back-off may last, as a share of `MAX_POLL_INTERVAL_MS`; the rest is
for the fetch, a commit and a margin."""


def read_notice(value: bytes | None) -> ErasureNotice:
    """A record's notice, read tolerantly (ADR 0023): members a newer `ErasureNotice` adds are ignored, a compatible
    change (`schemas/compat.py`) that an eraser may ship before notify (read strictly, every such notice was skipped
    and committed: no subscriber heard of those erasures); a member it needs, missing or of the wrong type, still
    refuses it (`ValidationError`)."""
    return ErasureNotice.model_validate_json(value or b"", extra="ignore")


def notice_group(namespace: str, subscriber: str) -> str:
    return namespaced(f"{NOTIFY_ERASURE_GROUPS}{subscriber}", namespace)


def notice_request(notice: ErasureNotice, sub: Subscriber) -> NotificationRequest:
    """The webhook telling `sub` of the erasure: structured CloudEvents JSON, its id the erasure's, its subject the
    pseudonym that `data.applicant.subject` carried. No commune: an erasure is the applicant's, wherever they went."""
    payload = ApplicantErased(id=notice.erasure_id, time=notice.erased_at, subject=notice.subject,
                              data=ErasedSubject(subject=notice.subject, erased_at=notice.erased_at)).model_dump_json()
    ref = f"subscriber:{sub.name}"
    return NotificationRequest(
        notification_id=notification_id(notice.erasure_id, f"erasure:{sub.name}", ref, NOTICE_SOURCE),
        event_id=notice.erasure_id, event_source=NOTICE_SOURCE, event_type=NOTICE_TYPE, rule=f"erasure:{sub.name}",
        kind=NotificationKind.WEBHOOK, channel=ChannelKind.WEBHOOK, audience=Audience.SYSTEM,
        recipient=Recipient(ref=ref, url=sub.url), payload=payload, commune="", province="",
        event_time=notice.erased_at)


class NoticeSender:
    """Tells one subscriber of every erasure, in its own consumer group (see the module's docstring)."""

    def __init__(self, conn: KafkaConnection, topic: str, namespace: str, sub: Subscriber, webhooks: Webhooks,
                 backoff: Backoff, session_timeout_ms: int, heartbeat_interval_ms: int, *,
                 max_poll_interval_ms: int = MAX_POLL_INTERVAL_MS, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.conn, self.topic, self.sub, self.webhooks, self.backoff = conn, topic, sub, webhooks, backoff
        self.group = notice_group(namespace, sub.name)
        self.timeouts = {"session_timeout_ms": session_timeout_ms, "heartbeat_interval_ms": heartbeat_interval_ms,
                         "max_poll_interval_ms": max_poll_interval_ms}
        self.longest_wait_s = max_poll_interval_ms / 1000 * WAIT_SHARE
        """A back-off past this (`NOTIFY_RETRY_CAP_S` above it) is cut to it, counted from the last poll; a call
        still under way after it (`NOTIFY_PROVIDER_TIMEOUT_S` above it) is cut too, and the notice waits."""
        self.clock, self.sleep = clock, sleep
        self.attempts = 0
        """Calls made for the notice that waits (0: none waits)."""
        self.waiting: TopicPartition | None = None
        """The partition of the notice that waits here, if one does."""
        metrics.ERASURE_NOTICES_WAITING.labels(sub.name).set(0)

    async def run(self) -> None:
        consumer = clients.consumer(self.conn, self.topic, client_id=f"commune-bus-notify-erasures-{self.sub.name}",
                                    group_id=self.group, **self.timeouts)
        starting = asyncio.ensure_future(consumer.start())  # its group's join inside; a run may end meanwhile
        try:
            await self._joined(starting)
            while True:
                await self.poll(consumer)
        finally:  # bounded as every client of notify's: a broker that does not answer holds a group's leave 40 s
            starting.cancel()
            starting.add_done_callback(retrieved)
            await close_within("notify", f"erasure-notices-{self.sub.name}-consumer", consumer.stop)

    async def _joined(self, starting: asyncio.Future[None]) -> None:
        """Wait for the consumer's start; past `JOIN_WAIT_S` say so (log, and the waiting gauge: its notices may wait)
        until it joins. aiokafka retries a join whose group coordinator is not available for ever, and the other
        groups (notify's own) may be fine: the subscriber's notices waited with every signal at "fine"."""
        done, _ = await asyncio.wait({starting}, timeout=JOIN_WAIT_S)
        if not done:
            log.warning("notify.erasure_notices_not_joined", subscriber=self.sub.name, waited_s=JOIN_WAIT_S,
                        effect="its notices wait until its consumer joins its group")
            metrics.ERASURE_NOTICES_WAITING.labels(self.sub.name).set(1)
            await starting
            log.info("notify.erasure_notices_joined", subscriber=self.sub.name)
            metrics.ERASURE_NOTICES_WAITING.labels(self.sub.name).set(0)
        starting.result()

    async def poll(self, consumer: AIOKafkaConsumer) -> None:
        """One fetch of one notice, told. A notice not taken is fetched again after a back-off (`seek`), not retried
        inside the poll: the consumer keeps polling, so a subscriber down for hours does not push it out of its group
        (`max.poll.interval.ms`). Between two polls come the fetch (at most 1 s), one call (cut at `longest_wait_s`)
        and its back-off (ending within `longest_wait_s` of the poll), or the call and a commit (at most
        `COMMIT_TIMEOUT_S`): about 156 s at most, whatever the subscriber's speed, `NOTIFY_PROVIDER_TIMEOUT_S` and
        `NOTIFY_RETRY_CAP_S`, and however many notices wait. A longer back-off (a `NOTIFY_RETRY_CAP_S` over ~300 s),
        or a fetch of up to 50 notices told one after the other (calls of ~6 s each), let the group drop the sender:
        the notice moved to another worker, was told again and the waiting gauge was cleared."""
        if self.waiting is not None and self.waiting not in consumer.assignment():
            self._handed_over()
        polled = self.clock()
        for tp, [record] in (await consumer.getmany(timeout_ms=1000, max_records=1)).items():
            taken = await self.tell(record)
            if tp not in consumer.assignment():  # moved during the call (a worker joined or left): its next owner
                self._handed_over()  # tells it again from the committed offset, under the same webhook id
            elif not taken:
                self.waiting = tp
                await self.sleep(self._wait_s(polled))
                if tp in consumer.assignment():  # else its next owner fetches it from the committed offset
                    consumer.seek(tp, record.offset)
                else:
                    self._handed_over()
            else:
                self.waiting = None
                await self._commit(consumer, tp, record.offset + 1)

    def _wait_s(self, polled: float) -> float:
        """The back-off of the notice that waits, cut to end within `longest_wait_s` of the poll at `polled`."""
        left = polled + self.longest_wait_s - self.clock()
        return max(0.0, min(self.backoff.delay(self.attempts), left))

    def _handed_over(self) -> None:
        """The waiting notice's partition is another worker's now: that one tries it, and says whether it waits."""
        self.waiting, self.attempts = None, 0
        metrics.ERASURE_NOTICES_WAITING.labels(self.sub.name).set(0)

    async def tell(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """One call for the record's notice: True once the subscriber took it (or the record is no notice: skipped,
        logged, counted), False to try again later."""
        try:
            notice = read_notice(record.value)
        except ValidationError:
            log.error("notify.erasure_notice_skipped", offset=record.offset, reason="invalid_field")
            metrics.SKIPPED.labels("invalid_field").inc()
            return True
        self.attempts += 1
        try:
            async with asyncio.timeout(self.longest_wait_s):  # the poll interval's, whatever the provider timeout
                await self.webhooks.send(compose(notice_request(notice, self.sub), 1))
        except Exception as exc:  # a bug met by a notice, or a subscriber URL longer than a request may hold:
            # waits as a refusal does, alerted: never committed, it would end every run after it, the citizens' too
            reason = (exc.reason if isinstance(exc, DeliveryError) else "TimeoutError" if isinstance(exc, TimeoutError)
                      else internal_error(exc).message)  # never its text
            metrics.ERASURE_NOTICES.labels(self.sub.name, "failed").inc()
            metrics.ERASURE_NOTICES_WAITING.labels(self.sub.name).set(1)
            log.warning("notify.erasure_notice_failed", subscriber=self.sub.name, erasure_id=notice.erasure_id,
                        reason=reason, attempt=self.attempts)
            return False
        metrics.ERASURE_NOTICES.labels(self.sub.name, "sent").inc()
        metrics.ERASURE_NOTICES_WAITING.labels(self.sub.name).set(0)
        log.info("notify.erasure_notice_sent", subscriber=self.sub.name, erasure_id=notice.erasure_id,
                 attempts=self.attempts)
        self.attempts = 0
        return True

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        """A refusal (the partition moved: its next owner sends the notice again, under the same webhook id) or no
        answer in time (the broker is gone: a later commit covers it) is logged and counted, not the run's end."""
        try:
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await consumer.commit({tp: OffsetAndMetadata(offset, "")})
        except (CommitFailedError, IllegalStateError, TimeoutError) as exc:  # IllegalStateError: no longer assigned
            metrics.COMMIT_FAILURES.labels("erasure_notice").inc()
            log.warning("notify.commit_timed_out" if isinstance(exc, TimeoutError) else "notify.commit_refused",
                        when="erasure_notice", subscriber=self.sub.name)
