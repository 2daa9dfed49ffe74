"""Delivery: two lanes (emergency never waits behind routine), rate limits, retries, deferral, status, DLQ.

Every attempt's outcome goes to the status topic; a success or a dead letter is
recorded in the ledger before the caller's `done` callback (which lets the
input offset be committed). Deferred requests are recorded and released later.
Every task the dispatcher runs is started through the injected `spawn`, so none
can die unseen; I/O is injected too (channels, producer, clock). Each status
record carries the request's `traceparent` and each log line about a delivery its
`trace_id` (the 32-hex W3C trace id: not personal data), so one id follows a
record from the gateway to the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import structlog
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from schemas import trace
from schemas.deadletter import internal_error
from schemas.notification import Audience, ChannelKind, NotificationRequest, NotificationStatus, Outcome
from services.notify import deadletters, metrics, sms, statuses
from services.notify.channels.base import Channel, DeliveryError, FellBack, Receipt, compose
from services.notify.circuits import Circuits, FallbackCircuit, Verdict
from services.notify.jobs import Claim, Clock, Done, Gate, Job, Lane, OpenGate, Outputs, Spawn, utcnow
from services.notify.ledger import Ledger, Producer
from services.notify.ledger_entry import EntryTooLarge
from services.notify.pacing import PacedFallback, take_token
from services.notify.personal import OpenContacts, as_is
from services.notify.policy import Backoff, QuietHours, TokenBucket, legacy_notification_id
from services.notify.retries import RetryQueue
from services.privacy.crypto import Erased
from services.privacy.keyring import KeyUnreadable
from services.privacy.store import KeysBehind

log = structlog.get_logger("notify.delivery")
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
"""A record refused for its size: refused again on every try, unlike an outage."""


def trace_id(request: NotificationRequest) -> str | None:
    """The `trace_id` key of every log line about this request's delivery (None for a deadline alert)."""
    return trace.trace_id(request.traceparent)


PROBE_WAIT_S = 1.0
"""How long a request waits in memory while its circuit's probe is out, before it asks again."""
PARK_HORIZON = timedelta(days=7)
"""How long after its event a request that never expires (a subscriber's webhook) may still be parked (`_park`)."""
DEFERRAL_TOO_LARGE = "deferral_too_large"
"""The dead-letter reason of a request that had to wait (quiet hours, a day-before reminder) and whose ledger entry
would not fit the topic (a webhook of an event past intake's default canonical limit: `NOTIFY_LEDGER_BYTES`)."""


class Dispatcher:
    def __init__(self, channels: Mapping[ChannelKind, Channel], ledger: Ledger, producer: Producer, outputs: Outputs, *,
                 spawn: Spawn, backoff: Backoff, quiet: QuietHours, rates: Mapping[str, float], segment_limit: int,
                 routine_workers: int, emergency_workers: int, clock: Clock = utcnow,
                 release_every_s: float = 1.0, opener: OpenContacts = as_is,
                 max_segments: int = sms.MAX_SEGMENTS, legacy_ids: bool = True, park_s: float | None = None,
                 release_limit: int | None = None, circuit: tuple[int, float] | None = None,
                 emergency_park_s: float | None = None) -> None:
        self.channels, self.ledger, self.producer, self.outputs = channels, ledger, producer, outputs
        self.backoff, self.quiet, self.segment_limit, self.clock = backoff, quiet, segment_limit, clock
        self.max_segments = max_segments
        self.legacy_ids = legacy_ids
        """Whether a request also counts as done or deferred under its pre-source id (ADR 0024)."""
        self.park_s, self.release_limit = park_s, release_limit
        """A request whose retries are spent on a retryable failure waits this long in the ledger and is tried again
        (`_park`), up to its expiry (`PARK_HORIZON` after its event if it has none); None: it is dead-lettered.
        Deferred requests are released while their lane's backlog is under `release_limit` (None: all at once)."""
        self.emergency_park_s = park_s if emergency_park_s is None or park_s is None else emergency_park_s
        """How long an emergency is parked instead (the service: the circuits' probe interval, `NotifySettings`): tried
        again that soon after its provider is back, not up to `park_s` after the routine requests (audit)."""
        self.circuits = Circuits(*circuit, clock) if circuit is not None and park_s is not None else None
        """(failures, probe_s): a channel failing that often in a row holds its routine requests (parked without a
        call, `circuits`), one probe each `probe_s`; None, or no `park_s`: every request is called."""
        self.opener = opener
        """Clear contacts for the provider call only (`personal.Opener`): requests stay sealed everywhere else."""
        self.routine, self.emergency = Lane("routine"), Lane("emergency")
        buckets = {ChannelKind(k): TokenBucket(rate, burst=max(1.0, rate / 10)) for k, rate in rates.items()}
        for lane in (self.routine, self.emergency):  # one bucket a channel: its rate is what the provider gets
            lane.buckets = buckets
        self.workers = {self.routine: routine_workers, self.emergency: emergency_workers}
        self.owns: Callable[[str], bool] = lambda commune: True
        """Which communes' deferred notifications this worker releases (set by the app from its assignment)."""
        self.holds: Callable[[object], bool] = lambda source: True
        """Whether an input partition is still assigned here; jobs of revoked partitions are dropped (the new
        owner re-derives them from the last committed offset), so two workers rarely race for one id."""
        self.gate: Gate = OpenGate()
        """Before every provider call: waits out rebalances, refuses after a stall (set by the app, ADR 0012)."""
        self._spawn, self._release_every_s = spawn, release_every_s
        self._retries: RetryQueue[Job] = RetryQueue(self._released)
        self._waiting = {self.routine: 0, self.emergency: 0}
        """Jobs in `_retries`, by lane: they count in their lane's backlog (`routine_backlog`, `emergency_backlog`)."""
        self._inflight: dict[str, Job] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- public ---------------------------------------------------------------------------------

    def start(self) -> None:
        for lane, n in self.workers.items():
            self._tasks += [self._spawn(f"{lane.name}-sender", self._work(lane)) for _ in range(n)]
        self._tasks.append(self._spawn("retries", self._retries.run()))
        self._tasks.append(self._spawn("deferred-release", self._release_deferred()))

    async def stop(self) -> None:
        """Stop sending; what is queued or waiting for a retry stays uncommitted and is redone by the next owner."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.circuits is not None:
            self.circuits.forget()

    @property
    def routine_backlog(self) -> int:
        """Routine jobs held in memory: queued, or waiting for a retry (a provider down keeps them there)."""
        return self.routine.queue.qsize() + self._waiting[self.routine]

    @property
    def emergency_backlog(self) -> int:
        """Emergency jobs held in memory: queued, or waiting for a retry."""
        return self.emergency.queue.qsize() + self._waiting[self.emergency]

    async def submit(self, request: NotificationRequest, done: Done, source: object = None) -> None:
        """Hand over one request; `done` is called once it is durably sent, dead-lettered or deferred."""
        nid = request.notification_id
        if nid in self._inflight:  # e.g. redelivered after a rebalance while the first copy is still queued
            self._inflight[nid].claims.append(Claim(done, source))
            return
        if any(i in self.ledger.done or i in self.ledger.deferred for i in self._ids(request)):
            done()
            return
        now = self.clock()
        if self._expired(request, now):
            await self._expire(request, 0)
            done()
            return
        not_before = self._not_before(request, now)
        if not_before is not None:
            await self._defer(request, not_before, 0)
            done()
            return
        self._enqueue(Job(request, [Claim(done, source)]))

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

    async def _expire(self, r: NotificationRequest, attempt: int) -> None:
        """What it tells is over: done (ledger), counted (status `expired`), logged, never sent."""
        await self.ledger.record_done(r.notification_id, Outcome.EXPIRED.value, commune=r.commune)
        await self._status(r, Outcome.EXPIRED, attempt)
        log.info("notify.expired", nid=r.notification_id, rule=r.rule, kind=r.kind.value, channel=r.channel.value,
                 commune=r.commune, trace_id=trace_id(r))

    def _lane(self, request: NotificationRequest) -> Lane:
        return self.emergency if request.is_emergency else self.routine

    def _enqueue(self, job: Job) -> None:
        self._inflight[job.request.notification_id] = job
        self._requeue(job)

    def _retry(self, delay_s: float, job: Job) -> None:
        self._waiting[self._lane(job.request)] += 1
        self._retries.put(delay_s, job)

    def _released(self, job: Job) -> None:
        self._waiting[self._lane(job.request)] -= 1
        self._requeue(job)

    def _requeue(self, job: Job) -> None:
        lane = self._lane(job.request)
        lane.queue.put_nowait(job)
        metrics.QUEUED.labels(lane.name).set(lane.queue.qsize())

    # --- workers --------------------------------------------------------------------------------

    async def _work(self, lane: Lane) -> None:
        while True:
            job = await lane.queue.get()
            metrics.QUEUED.labels(lane.name).set(lane.queue.qsize())
            if (bucket := lane.buckets.get(job.request.channel)) is not None:
                await take_token(bucket, urgent=lane is self.emergency)
            await self._attempt(lane, job)

    async def _attempt(self, lane: Lane, job: Job) -> None:
        if await self._opened(job) is None:  # erased, keys behind or unopenable: dealt with
            return
        source = job.claims[0].source if job.claims else None  # the input partition it came from (every claim's)
        await self.gate.enter(source)
        try:
            await self._attempt_fenced(lane, job)
        finally:
            self.gate.leave(source)

    async def _opened(self, job: Job) -> NotificationRequest | None:
        """The request with its contacts opened, or None once it is dealt with: erased (done), keys behind or
        unreadable (tried again later), unopenable (dead-lettered)."""
        try:
            return await self.opener(job.request)
        except Erased:
            await self._erased(job)
            return None
        except (KeysBehind, KeyUnreadable) as exc:  # the key store has not caught up yet, or this service lacks the
            # KEK a key was wrapped under (a rolling rotation): this request waits and is tried again, the lanes go
            # on (ending the run would cut other lanes' provider calls short and repeat them); never dead-lettered,
            # never counted erased (once given the KEK and restarted, notify opens it)
            delay = self.backoff.delay(self.backoff.max_attempts)
            log.warning("notify.keys_behind" if isinstance(exc, KeysBehind) else "notify.key_unreadable",
                        nid=job.request.notification_id, delay_s=round(delay, 2), trace_id=trace_id(job.request))
            self._retry(delay, job)
            return None
        except KafkaError:  # the key store could not be read: the run restarts, the record is done again
            raise
        except Exception as exc:  # tampered or malformed personal data: this one request is dead-lettered
            await self._unexpected(job, exc, "unopenable")
            return None

    async def _erased(self, job: Job) -> None:
        """The applicant's key is gone: nobody can be told; done (ledger), counted (status `erased`), never retried."""
        r = job.request
        if not self._is_done(r):
            await self.ledger.record_done(r.notification_id, Outcome.ERASED.value)
            await self._status(r, Outcome.ERASED, job.attempt)
        log.info("notify.skipped_erased", nid=r.notification_id, kind=r.kind.value, channel=r.channel.value,
                 commune=r.commune, trace_id=trace_id(r))
        self._finish(job)

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

    async def _attempt_fenced(self, lane: Lane, job: Job) -> None:
        """One attempt inside the gate: no await between the ownership checks and the provider call.

        The contacts are opened again here, once the request is known to be this worker's: an erasure read while
        the call waited out a rebalance stops it (the first open, before the gate, read the keys in: this one does
        no I/O, so it suspends nothing). The clear request goes to the provider and nowhere else.
        """
        r = job.request
        if self._settled_elsewhere(job):
            return
        if (clear := await self._opened(job)) is None:  # erased meanwhile (done), or otherwise dealt with
            return
        if self._expired(r, self.clock()):  # queued, retried or deferred past its expiry
            await self._expire(r, job.attempt)
            self._finish(job)
            return
        if (later := self._not_before(r, self.clock())) is not None:  # queued or retried into the quiet hours
            await self._defer(r, later, job.attempt)
            self._finish(job)
            return
        try:
            channel = self.channels[r.channel]
        except KeyError:
            job.attempt += 1
            await self._failed(job, DeliveryError("no_channel", retryable=False))
            return
        verdict = self.circuits.verdict(r) if self.circuits is not None else Verdict.CALL
        if verdict is Verdict.WAIT:  # a probe is out: its outcome, in a moment, says whether to call or to hold
            self._give_back(lane, r)  # (review: parked beside a probe that succeeded, they waited 10 minutes)
            self._retry(PROBE_WAIT_S, job)
            return
        if verdict is Verdict.HOLD and await self._held(job):
            self._give_back(lane, r)
            return
        gate = self._fallback_gate(r)
        job.attempt += 1
        try:
            receipt = await self._send(lane, channel, clear, verdict, gate)
        except DeliveryError as err:
            if gate is not None and gate.held:
                await self._fallback_held(job, gate)
            else:
                await self._failed(job, err)
            return
        except Exception as exc:  # a bug met by this request (template, client): dead-lettered, the lane goes on
            await self._unexpected(job, exc, "internal_error")
            return
        await self.ledger.record_done(r.notification_id, Outcome.SENT.value)
        outcome = Outcome.DELIVERED if receipt.delivered else Outcome.SENT
        if receipt.reply_refused is not None:  # sent all the same; the provider's answer is not ours to keep
            metrics.PROVIDER_REPLIES_REFUSED.labels(receipt.via or r.channel.value, receipt.reply_refused).inc()
            log.warning("notify.provider_reply_refused", nid=r.notification_id, channel=r.channel.value,
                        via=receipt.via, reason=receipt.reply_refused, trace_id=trace_id(r))
        await self._status(r, outcome, job.attempt, reason=receipt.reply_refused,
                           provider_message_id=receipt.provider_message_id)
        metrics.LATENCY.labels(lane.name).observe(max(0.0, (self.clock() - r.event_time).total_seconds()))
        log.info("notify.sent", nid=r.notification_id, kind=r.kind.value, channel=r.channel.value, via=receipt.via,
                 recipient=r.recipient.ref, attempt=job.attempt, commune=r.commune, trace_id=trace_id(r))
        self._finish(job)

    async def _send(self, lane: Lane, channel: Channel, clear: NotificationRequest, verdict: Verdict,
                    gate: FallbackCircuit | None) -> Receipt:
        """Compose and call, the outcome told to the request's circuit: an answer (sent, or refused for good) or a
        retryable failure; neither for a refusal before any call (no phone, a bad address: `local`) nor for anything
        else (a bug, a cancellation), which gives a probe back. A send that fell back to another channel (ZNS to SMS)
        asked that channel's circuit first (`gate`), then took a token of its rate bucket as the lane's own sends of
        it do (`PacedFallback`), and tells each circuit its own provider's outcome (a fallback held: none for the
        fallback's)."""
        ok: bool | None = None
        fell_back: FellBack | None = None
        paced = PacedFallback(lane.buckets, lane is self.emergency, gate)
        message = compose(clear, self.segment_limit, self.max_segments, paced)
        try:
            receipt = await channel.send(message)
            ok, fell_back = True, receipt.fell_back
            return receipt
        except DeliveryError as err:
            ok, fell_back = None if err.local else not err.retryable, err.fell_back
            raise
        finally:
            if self.circuits is not None:
                self.circuits.settle(clear, verdict, ok, fell_back, gate.verdict if gate else Verdict.CALL)

    def _fallback_gate(self, r: NotificationRequest) -> FallbackCircuit | None:
        """What the request's channel asks before it falls back to another (ZNS to SMS): that one's circuit."""
        if self.circuits is None or self.park_s is None:
            return None
        return FallbackCircuit(self.circuits, r, timedelta(seconds=self.park_s), lambda wait: self._may_park(r, wait))

    async def _fallback_held(self, job: Job, gate: FallbackCircuit) -> None:
        """The first provider did not deliver and the fallback's circuit held its call (ADR 0032, amended): the
        request waits as one of the fallback's channel would, for a probe's outcome in memory or parked for the hold
        (`parked:circuit_open:<fallback>`). The try is not counted against its budget: what it needs is the fallback,
        which was not called. Its next try asks the first provider again, with the same Idempotency-Key."""
        assert gate.to is not None  # held: a fallback was asked for
        job.attempt -= 1
        held = DeliveryError(f"circuit_open:{gate.to.value}")
        if gate.held_for is None or not await self._park(job, held, gate.held_for):
            self._retry(PROBE_WAIT_S, job)  # a probe out (or the hold no longer fits: next time it is called)

    @staticmethod
    def _give_back(lane: Lane, r: NotificationRequest) -> None:
        """The rate token `_work` took for a request its circuit held: no send was made."""
        if (bucket := lane.buckets.get(r.channel)) is not None:
            bucket.give_back()

    async def _held(self, job: Job) -> bool:
        """A routine request for a channel whose circuit is open: parked without a call for as long as the outage
        has lasted (between the probe interval and `park_s`); False if it may not wait that long (then it is called
        as before, and its outcome counts)."""
        assert self.circuits is not None and self.park_s is not None
        hold = self.circuits.hold_for(job.request, timedelta(seconds=self.park_s))
        return await self._park(job, DeliveryError("circuit_open"), hold)

    async def _failed(self, job: Job, err: DeliveryError) -> None:
        r = job.request
        await self._status(r, Outcome.FAILED, job.attempt, reason=err.reason)
        budget = job.attempts if job.attempts is not None else self.backoff.max_attempts
        if err.retryable and job.attempt < budget:
            delay = self.backoff.delay(job.attempt)
            log.warning("notify.retry", nid=r.notification_id, channel=r.channel.value, reason=err.reason,
                        attempt=job.attempt, delay_s=round(delay, 2), trace_id=trace_id(r))
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
        log.error("notify.dead_lettered", nid=r.notification_id, kind=r.kind.value, channel=r.channel.value,
                  reason=reason, trace_id=trace_id(r))

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
        log.warning("notify.deferral_too_large", nid=r.notification_id, channel=r.channel.value, detail=str(exc),
                    trace_id=trace_id(r))

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
        log.warning("notify.parked", nid=r.notification_id, kind=r.kind.value, channel=r.channel.value,
                    reason=err.reason, attempt=job.attempt, until=until.isoformat(), trace_id=trace_id(r))
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
        headers = [("dlq.reason", reason.encode()), ("dlq.attempts", str(attempt).encode()),
                   ("dlq.rejected.at", self.clock().isoformat().encode())]
        for value, omitted in (deadletters.bounded(r), deadletters.least(r)):
            try:
                await self.producer.send_and_wait(self.outputs.dlq, value, r.commune.encode(),
                                                  headers=headers + omitted)
                return
            except TOO_LARGE:
                continue
        metrics.DEAD_LETTERS_REFUSED.inc()
        log.error("notify.dead_letter_refused", nid=r.notification_id, channel=r.channel.value, reason=reason,
                  trace_id=trace_id(r))

    async def _unexpected(self, job: Job, exc: Exception, reason: str) -> None:
        """An exception no channel expects, met by one request: logged (type and file:line, never its text, which
        may quote the request), counted, the request dead-lettered; one bad request must not stop its lane."""
        r = job.request
        log.error("notify.request_failed", nid=r.notification_id, channel=r.channel.value, reason=reason,
                  detail=internal_error(exc).message, trace_id=trace_id(r))
        metrics.SKIPPED.labels(reason).inc()
        await self._failed(job, DeliveryError(reason, retryable=False))

    def _finish(self, job: Job) -> None:
        self._inflight.pop(job.request.notification_id, None)
        for claim in job.claims:
            claim.done()

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
            log.error("notify.status_refused", nid=r.notification_id, channel=r.channel.value, outcome=outcome.value,
                      size=len(value), trace_id=trace_id(r))

    # --- deferred -------------------------------------------------------------------------------

    async def _release_deferred(self) -> None:
        """Each tick, send what is due among the ledger's deferred notifications of communes this worker owns.

        Scanning the ledger (not a private heap) means entries deferred by another worker, or before a restart
        or rebalance, are released by whoever owns the commune now.
        """
        while True:
            now = self.clock()
            for nid, request in list(self.ledger.deferred.items()):
                if nid in self._inflight or not self.owns(request.commune):
                    continue
                if request.not_before is None or request.not_before <= now:
                    self._enqueue(Job(request.model_copy(update={"not_before": None}), [Claim(lambda: None)]))
            metrics.DEFERRED.set(len(self.ledger.deferred))
            await asyncio.sleep(self._release_every_s)

