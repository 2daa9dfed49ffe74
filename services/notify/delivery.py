"""Delivery: two lanes (emergency never waits behind routine), rate limits, retries, deferral, status, DLQ.

Every attempt's outcome goes to the status topic; a success or a dead letter is
recorded in the ledger before the caller's `done` callback (which lets the
input offset be committed). Deferred requests are recorded and released later.
Every task the dispatcher runs is started through the injected `spawn`, so none
can die unseen; I/O is injected too (channels, producer, clock). Each status
record carries the request's `traceparent` and each log line about a delivery its
`trace_id` (the 32-hex W3C trace id: not personal data), so one id follows a
record from the gateway to the provider.

The dispatcher is three layers, one module each: `outcomes.Outcomes` (what becomes of a job: retried, deferred,
parked, dead-lettered, done, and its status), `sending.Sending` (one attempt at a provider, through the fence and the
circuits) and `Dispatcher` here (the lanes, their senders and the release of deferred requests).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping

import structlog

from schemas.notification import ChannelKind, NotificationRequest
from services.notify import metrics, sms
from services.notify.channels.base import Channel
from services.notify.circuits import Circuits
from services.notify.jobs import Claim, Clock, Done, Gate, Job, Lane, OpenGate, Outputs, Revoked, Spawn, steady, utcnow
from services.notify.ledger import Ledger, Producer
from services.notify.outcomes import ids
from services.notify.pacing import take_token
from services.notify.personal import OpenContacts, as_is
from services.notify.policy import Backoff, QuietHours, TokenBucket
from services.notify.retries import RetryQueue
from services.notify.sending import Sending

log = structlog.get_logger("notify.delivery")
COMMUNE_KEY = re.compile(r"[0-9]{5}")
"""What keys every record the dispatcher writes (statuses, dead letters; commune.notify.status's documented key)."""


class Dispatcher(Sending):
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
        ticks = steady if clock is utcnow else clock  # a test's own clock drives both
        self.circuits = Circuits(*circuit, ticks) if circuit is not None and park_s is not None else None
        """(failures, probe_s): a channel failing that often in a row holds its routine requests (parked without a
        call, `circuits`), one probe each `probe_s`; None, or no `park_s`: every request is called. Timed on the
        steady clock, not the wall clock (an NTP step back of an hour held every routine request an hour more)."""
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
        """Hand over one request; `done` is called once it is durably sent, dead-lettered or deferred (at once for a
        request of no commune: nothing is written for it)."""
        nid = request.notification_id
        if not COMMUNE_KEY.fullmatch(request.commune):
            # its statuses and dead letter would be keyed b"" and say commune "": a request of no commune (an erasure
            # notice, ADR 0035) is told outside the dispatcher, so one here is a bug, counted and alerted as one
            log.error("notify.request_without_commune", **ids(request), rule=request.rule,
                      channel=request.channel.value)
            metrics.SKIPPED.labels("internal_error").inc()
            done()
            return
        # the ledger first: an id deferred there while in flight is a released deferral, its ledger partition's
        # releaser's to send (review: attached to the released job, this record kept it here after the release's
        # partition went, and the new releaser sent it too)
        if any(i in self.ledger.done or i in self.ledger.deferred for i in self._ids(request)):
            done()
            return
        if nid in self._inflight:  # e.g. redelivered after a rebalance while the first copy is still queued
            self._inflight[nid].claims.append(Claim(done, source))
            return
        now = self.clock()
        expired = self._expired(request, now)
        not_before = None if expired else self._not_before(request, now)
        if (expired or not_before is not None) and self._answering(source):
            await self.gate.enter(source)  # answered: no wait, and a revocation's drain waits for this write (review)
            try:
                if not_before is not None:
                    await self._defer(request, not_before, 0)
                else:
                    await self._expire(request, 0)
            finally:
                self.gate.leave(source)
            done()
            return
        self._enqueue(Job(request, [Claim(done, source)]))  # a call, or that write once its consumer is answered

    def _answering(self, source: object) -> bool:
        """Whether `source`'s partition is this worker's and its consumer settled and answered by the group now: a
        ledger entry written otherwise (a batch fetched before a revocation, or before a cut-off, handled late) could
        land after the next owner's done entry, and compaction keep it: a deferral sent again (audit). Otherwise the
        request goes to the lanes, whose fenced attempt expires or defers it as this would. A worker that stood
        still past its stall limit raises here (`WorkerStalled`, a Kafka error: the run ends, as at the fence)."""
        if source is not None and not self.holds(source):
            return False
        try:
            self.gate.check(source)
        except Revoked:
            return False
        return True

    # --- lanes ----------------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        self._inflight[job.request.notification_id] = job
        self._requeue(job)

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

