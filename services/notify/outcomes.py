"""What becomes of a job: expired, erased, retried, deferred, parked, dead-lettered, or done; the decisions that lead
there (may it go now, is it already done) and each outcome's status record and ledger entry.

`Outcomes` is the base of the dispatcher (`delivery.Dispatcher`, through `sending.Sending`): it holds no state of
its own, the attributes below are set by `Dispatcher.__init__`, and it knows no provider call. Each status record
carries the request's `traceparent` and each log line about a delivery its `trace_id`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from schemas import notify_deadletter
from schemas.deadletter import internal_error
from schemas.lookup import identifies_nobody, shown_trace_id
from schemas.notification import Audience, NotificationRequest, NotificationStatus, Outcome
from services.notify import deadletters, metrics, statuses
from services.notify.channels.base import DeliveryError
from services.notify.jobs import Clock, Job, Lane, Outputs
from services.notify.ledger import Ledger, Producer
from services.notify.ledger_entry import EntryTooLarge
from services.notify.policy import Backoff, QuietHours, legacy_notification_id
from services.notify.retries import RetryQueue

log = structlog.get_logger("notify.delivery")
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
"""A record refused for its size: refused again on every try, unlike an outage."""


def ids(request: NotificationRequest) -> dict[str, str | None]:
    """The `nid` and `trace_id` keys of every log line about this request's delivery. Both are unkeyed hashes of the
    event's source and id (the trace id when derived from them): for an event whose source or id holds a personal
    number, trying every number finds it again (privacy audit: 0.24 s a million for the trace id, 0.42 s for the
    nid), and logs are kept where no erasure reaches. Such an event's lines have neither (the trace id only when the
    producer gave its own: `schemas.lookup.shown_trace_id`). A deadline alert has no source nor trace id, and its id
    holds its dossier's code, a producer's text (second privacy audit: a code holding a CCCD kept its nid)."""
    source, event_id = request.event_source, request.event_id
    personal = not identifies_nobody(event_id) or (source is not None and not identifies_nobody(source))
    return {"nid": None if personal else request.notification_id,
            "trace_id": shown_trace_id(request.traceparent, source, event_id)}


PARK_HORIZON = timedelta(days=7)
"""How long after its event a request that never expires (a subscriber's webhook) may still be parked (`_park`)."""
DEFERRAL_TOO_LARGE = "deferral_too_large"
"""The dead-letter reason of a request that had to wait (quiet hours, a day-before reminder) and whose ledger entry
would not fit the topic (a webhook of an event past intake's default canonical limit: `NOTIFY_LEDGER_BYTES`)."""



class Outcomes:
    """The dispatcher's decisions about a job and their outcomes (see the module docstring)."""

    ledger: Ledger
    producer: Producer
    outputs: Outputs
    backoff: Backoff
    quiet: QuietHours
    clock: Clock
    legacy_ids: bool
    park_s: float | None
    emergency_park_s: float | None
    routine: Lane
    emergency: Lane
    holds: Callable[[object], bool]
    _retries: RetryQueue[Job]
    _waiting: dict[Lane, int]
    _inflight: dict[str, Job]

    # --- decisions ------------------------------------------------------------------------------

    def _not_before(self, request: NotificationRequest, now: datetime) -> datetime | None:
        """Later if the rule asks for it (day-before) or a citizen is in quiet hours; emergencies never wait."""
        if request.is_emergency:
            return None
        at = request.not_before if request.not_before and request.not_before > now else now
        if request.audience is Audience.CITIZEN:
            at = self.quiet.release_at(at)
        return at if at > now else None

    def _ids(self, request: NotificationRequest) -> tuple[str, ...]:
        """The ids the ledger may hold `request` under: its own, and while old entries can exist (ADR 0024) the one
        the previous version gave it (before ids named the event's source)."""
        if not self.legacy_ids or request.event_source is None:
            return (request.notification_id,)
        return request.notification_id, legacy_notification_id(request)

    def _is_done(self, request: NotificationRequest) -> bool:
        return any(i in self.ledger.done for i in self._ids(request))

    @staticmethod
    def _expired(request: NotificationRequest, now: datetime) -> bool:
        return request.expires_at is not None and now >= request.expires_at

    def _lane(self, request: NotificationRequest) -> Lane:
        return self.emergency if request.is_emergency else self.routine

    def _settled_elsewhere(self, job: Job) -> bool:
        """Whether `job` is no longer this worker's to act on, dealt with if so: every partition it came from was
        revoked (dropped: the new owner redoes it), or another worker recorded it done meanwhile (finished)."""
        job.claims = [c for c in job.claims if c.source is None or self.holds(c.source)]
        if not job.claims:
            self._inflight.pop(job.request.notification_id, None)
            return True
        if self._is_done(job.request):
            self._finish(job)
            return True
        return False

    # --- outcomes -------------------------------------------------------------------------------

    async def _expire(self, r: NotificationRequest, attempt: int) -> None:
        """What it tells is over: done (ledger), counted (status `expired`), logged, never sent."""
        await self.ledger.record_done(r.notification_id, Outcome.EXPIRED.value, commune=r.commune)
        await self._status(r, Outcome.EXPIRED, attempt)
        log.info("notify.expired", **ids(r), rule=r.rule, kind=r.kind.value, channel=r.channel.value,
                 commune=r.commune)

    async def _erased(self, job: Job) -> None:
        """The applicant's key is gone: nobody can be told; done (ledger), counted (status `erased`), never retried."""
        r = job.request
        if not self._is_done(r):
            await self.ledger.record_done(r.notification_id, Outcome.ERASED.value)
            await self._status(r, Outcome.ERASED, job.attempt)
        log.info("notify.skipped_erased", **ids(r), kind=r.kind.value, channel=r.channel.value,
                 commune=r.commune)
        self._finish(job)

    def _retry(self, delay_s: float, job: Job) -> None:
        self._waiting[self._lane(job.request)] += 1
        self._retries.put(delay_s, job)

    def _finish(self, job: Job) -> None:
        self._inflight.pop(job.request.notification_id, None)
        for claim in job.claims:
            claim.done()

    async def _failed(self, job: Job, err: DeliveryError) -> None:
        r = job.request
        await self._status(r, Outcome.FAILED, job.attempt, reason=err.reason)
        budget = job.attempts if job.attempts is not None else self.backoff.max_attempts
        if err.retryable and job.attempt < budget:
            delay = self.backoff.delay(job.attempt)
            log.warning("notify.retry", **ids(r), channel=r.channel.value, reason=err.reason,
                        attempt=job.attempt, delay_s=round(delay, 2))
            self._retry(delay, job)
            return
        park_s = self.emergency_park_s if r.is_emergency else self.park_s
        if err.retryable and park_s is not None and await self._park(job, err, timedelta(seconds=park_s)):
            return
        await self._give_up(r, err.reason if not err.retryable else f"retries_exhausted:{err.reason}", job.attempt)
        self._finish(job)

    async def _give_up(self, r: NotificationRequest, reason: str, attempt: int) -> None:
        """Dead-lettered (bounded), done (ledger), counted (status `dead_lettered` with `reason`), logged."""
        await self._dead_letter(r, reason, attempt)
        await self.ledger.record_done(r.notification_id, Outcome.DEAD_LETTERED.value, commune=r.commune)
        await self._status(r, Outcome.DEAD_LETTERED, attempt, reason=reason)
        log.error("notify.dead_lettered", **ids(r), kind=r.kind.value, channel=r.channel.value,
                  reason=reason)

    async def _defer(self, r: NotificationRequest, until: datetime, attempt: int) -> None:
        """Deferred until `until` (the ledger, status `deferred`); dead-lettered (`DEFERRAL_TOO_LARGE`) if its entry
        would not fit the ledger topic: it cannot wait, and it may not be sent now (a citizen's quiet hours, a
        day-before reminder)."""
        deferred = r.model_copy(update={"not_before": until})
        try:
            await self.ledger.record_deferred(deferred)
        except EntryTooLarge as exc:
            self._too_large_to_defer(r, exc)
            await self._give_up(r, DEFERRAL_TOO_LARGE, attempt)
            return
        await self._status(deferred, Outcome.DEFERRED, attempt, not_before=until)

    def _too_large_to_defer(self, r: NotificationRequest, exc: EntryTooLarge) -> None:
        metrics.DEFERRALS_TOO_LARGE.labels(r.channel.value).inc()
        log.warning("notify.deferral_too_large", **ids(r), channel=r.channel.value, detail=str(exc))

    async def _park(self, job: Job, err: DeliveryError, wait: timedelta) -> bool:
        """A provider failing past the retries' budget (an outage of hours, a revoked credential being renewed), or
        its circuit open: the request waits `wait` in the ledger, deferred like one in the quiet hours (durable, out
        of memory, released to whoever owns its commune then, under `release_limit`), and is tried again with a fresh
        budget, until it is sent. Not past its expiry, nor past `PARK_HORIZON` after its event for one that never
        expires (a subscriber's webhook): nothing is parked for ever. False when it may not wait, or its entry would not
        fit the ledger topic (counted, `notify_deferrals_too_large_total`): then it is dead-lettered, or called if it
        was held."""
        r = job.request
        if (until := self._park_until(r, wait)) is None:
            return False
        # after the provider call, as before it: a call that outlived a revocation's drain (or a stall) must not write
        # a deferral after the next owner's done entry (compaction would keep the deferral, and send it again)
        if self._settled_elsewhere(job):
            return True
        parked = r.model_copy(update={"not_before": until})
        try:
            await self.ledger.record_deferred(parked)
        except EntryTooLarge as exc:  # cannot wait: given up after its retries (or called, if it was held)
            self._too_large_to_defer(r, exc)
            return False
        reason = f"parked:{err.reason}"
        await self._status(parked, Outcome.DEFERRED, job.attempt, reason=reason, not_before=until)
        metrics.PARKED.labels(r.channel.value).inc()
        log.warning("notify.parked", **ids(r), kind=r.kind.value, channel=r.channel.value,
                    reason=err.reason, attempt=job.attempt, until=until.isoformat())
        self._finish(job)
        return True

    def _may_park(self, r: NotificationRequest, wait: timedelta) -> bool:
        """Whether `_park` would park `r` for `wait`: in time, and its entry fits the ledger topic."""
        until = self._park_until(r, wait)
        return until is not None and self.ledger.fits_deferred(r.model_copy(update={"not_before": until}))

    def _park_until(self, r: NotificationRequest, wait: timedelta) -> datetime | None:
        """When `r` parked for `wait` is due; None if that is past its expiry (or `PARK_HORIZON` after its event)."""
        until = self.clock() + wait
        if not r.is_emergency and r.audience is Audience.CITIZEN:
            until = self.quiet.release_at(until)  # not due in the quiet hours, to be passed over all night
        return None if until >= (r.expires_at or r.event_time + PARK_HORIZON) else until

    async def _dead_letter(self, r: NotificationRequest, reason: str, attempt: int) -> None:
        """Write the bounded dead letter (`deadletters.bounded`); if the topic refuses it for its size, the least one;
        if that too, log and count the refusal and go on: a record refused for its size is refused again after a
        restart, so ending the run would loop (an outage still ends it: the write is redone when the broker is back).
        """
        headers = notify_deadletter.headers(reason, attempt, self.clock())
        for value, omitted in (deadletters.bounded(r), deadletters.least(r)):
            try:
                await self.producer.send_and_wait(self.outputs.dlq, value, r.commune.encode(),
                                                  headers=headers + omitted)
                return
            except TOO_LARGE:
                continue
        metrics.DEAD_LETTERS_REFUSED.inc()
        log.error("notify.dead_letter_refused", **ids(r), channel=r.channel.value, reason=reason)

    async def _unexpected(self, job: Job, exc: Exception, reason: str) -> None:
        """An exception no channel expects, met by one request: logged (type and file:line, never its text, which
        may quote the request), counted, the request dead-lettered; one bad request must not stop its lane."""
        r = job.request
        log.error("notify.request_failed", **ids(r), channel=r.channel.value, reason=reason,
                  detail=internal_error(exc).message)
        metrics.SKIPPED.labels(reason).inc()
        await self._failed(job, DeliveryError(reason, retryable=False))

    async def _status(self, r: NotificationRequest, outcome: Outcome, attempt: int, *, reason: str | None = None,
                      provider_message_id: str | None = None, not_before: datetime | None = None) -> None:
        """Write the bounded status (`statuses.bounded`); if the topic refuses it for its size, log and count the
        refusal and go on, as for a dead letter: it would be refused again after a restart, and the ledger, not the
        status, says what was sent (an outage still ends the run)."""
        metrics.NOTIFICATIONS.labels(r.kind.value, r.channel.value, outcome.value).inc()
        status = NotificationStatus(
            notification_id=r.notification_id, event_id=r.event_id, rule=r.rule, kind=r.kind, channel=r.channel,
            recipient_ref=r.recipient.ref, commune=r.commune, outcome=outcome, attempt=attempt, at=self.clock(),
            reason=reason, provider_message_id=provider_message_id, not_before=not_before,
            traceparent=r.traceparent)
        value = statuses.bounded(status)
        try:
            await self.producer.send_and_wait(self.outputs.status, value, r.commune.encode())
        except TOO_LARGE:
            metrics.STATUSES_REFUSED.inc()
            log.error("notify.status_refused", **ids(r), channel=r.channel.value, outcome=outcome.value,
                      size=len(value))
