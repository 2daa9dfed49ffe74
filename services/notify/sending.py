"""One attempt at a provider: the request's contacts opened, the fence entered, the ownership, expiry and
quiet-hours checks made, its channel's circuit asked, the call (a fallback asked of its own channel's circuit and
paced by its rate bucket), and its outcome told to the circuits.

`Sending` is the dispatcher's middle layer: `delivery.Dispatcher` extends it, and what becomes of the job afterwards
is its base's, `outcomes.Outcomes`. The attributes below are set by `Dispatcher.__init__`. The clear request goes to
the provider and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import structlog
from aiokafka.errors import KafkaError

from schemas.notification import ChannelKind, NotificationRequest, Outcome
from services.common import store_faults
from services.notify import metrics
from services.notify.channels.base import Channel, DeliveryError, FellBack, Receipt, compose
from services.notify.channels.http import UNKNOWN_SUBSCRIBER
from services.notify.circuits import Circuits, FallbackCircuit, Verdict
from services.notify.jobs import Gate, Job, Lane, Revoked
from services.notify.outcomes import Outcomes, ids
from services.notify.pacing import PacedFallback
from services.notify.personal import OpenContacts
from services.privacy.crypto import Erased
from services.privacy.key_records import KeyUnreadable
from services.privacy.store import KeysBehind

log = structlog.get_logger("notify.delivery")
PROBE_WAIT_S = 1.0
"""How long a request waits in memory while its circuit's probe is out, before it asks again."""


def count_webhook_call(request: NotificationRequest, err: DeliveryError | None) -> None:
    """A webhook call's outcome under its subscriber's registry name, for the alert WebhookSubscriberFailing: sent,
    refused (not retryable: dead-lettered at once) or failed (retried, then parked). One for an unknown subscriber is
    not counted: the label holds names of the operator's registry only, never a URL or a person."""
    if request.channel is not ChannelKind.WEBHOOK or (err is not None and err.reason == UNKNOWN_SUBSCRIBER):
        return
    outcome = "sent" if err is None else "failed" if err.retryable else "refused"
    metrics.WEBHOOK_CALLS.labels(request.recipient.ref.removeprefix("subscriber:"), outcome).inc()


class Sending(Outcomes):
    """One attempt at a provider for a job a sender took (see the module docstring)."""

    channels: Mapping[ChannelKind, Channel]
    circuits: Circuits | None
    opener: OpenContacts
    gate: Gate
    segment_limit: int
    max_segments: int

    async def _attempt(self, lane: Lane, job: Job) -> None:
        source = job.claims[0].source if job.claims else None  # the input partition it came from (every claim's)
        if lane is self.emergency:
            try:
                self.gate.check(source)
            except Revoked:  # its consumer is rebalancing (a released parked emergency: the routine one, restoring for
                # minutes): not waited for at the fence, where it would hold this sender while the settled urgent
                # consumer's storm warnings queue behind it; tried again in a moment, its token given back (ADR 0012)
                self._give_back(lane, job.request)
                self._retry(PROBE_WAIT_S, job)
                return
        if await self._opened(job) is None:  # erased, keys behind or unopenable: dealt with
            return
        await self.gate.enter(source)
        try:
            await self._attempt_fenced(lane, job, source)
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
                        **ids(job.request), delay_s=round(delay, 2))
            self._retry(delay, job)
            return None
        except KafkaError:  # the key store could not be read: the run restarts, the record is done again
            raise
        except Exception as exc:  # tampered or malformed personal data: this one request is dead-lettered
            store_faults.raise_if_fault(exc)  # (the key store's disk failing is not: the process ends)
            await self._unexpected(job, exc, "unopenable")
            return None

    async def _attempt_fenced(self, lane: Lane, job: Job, source: object = None) -> None:
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
            self._give_back(lane, r)  # no call: its rate token is the others' (review)
            await self._expire(r, job.attempt)
            self._finish(job)
            return
        if (later := self._not_before(r, self.clock())) is not None:  # queued or retried into the quiet hours
            self._give_back(lane, r)
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
            receipt = await self._send(lane, channel, clear, verdict, gate, source)
        except DeliveryError as err:
            if gate is not None and gate.held:
                await self._fallback_held(job, gate)
            else:
                await self._failed(job, err)
            return
        except Revoked:  # its consumer was revoked while the fallback waited: not sent here; back to the fence, where
            job.attempt -= 1  # `_settled_elsewhere` drops it (the partition went) or the ledger says what was sent
            self._retry(PROBE_WAIT_S, job)
            return
        except KafkaError:  # the fence's stall check before a fallback (`WorkerStalled`): the run restarts, and the
            raise  # next owner sends it (dead-lettered, it would be recorded done and never sent)
        except Exception as exc:  # a bug met by this request (template, client): dead-lettered, the lane goes on
            store_faults.raise_if_fault(exc)
            await self._unexpected(job, exc, "internal_error")
            return
        await self.ledger.record_done(r.notification_id, Outcome.SENT.value)
        outcome = Outcome.DELIVERED if receipt.delivered else Outcome.SENT
        if receipt.reply_refused is not None:  # sent all the same; the provider's answer is not ours to keep
            metrics.PROVIDER_REPLIES_REFUSED.labels(receipt.via or r.channel.value, receipt.reply_refused).inc()
            log.warning("notify.provider_reply_refused", **ids(r), channel=r.channel.value,
                        via=receipt.via, reason=receipt.reply_refused)
        await self._status(r, outcome, job.attempt, reason=receipt.reply_refused,
                           provider_message_id=receipt.provider_message_id)
        metrics.LATENCY.labels(lane.name).observe(max(0.0, (self.clock() - r.event_time).total_seconds()))
        log.info("notify.sent", **ids(r), kind=r.kind.value, channel=r.channel.value, via=receipt.via,
                 recipient=r.recipient.ref, attempt=job.attempt, commune=r.commune)
        self._finish(job)

    async def _send(self, lane: Lane, channel: Channel, clear: NotificationRequest, verdict: Verdict,
                    gate: FallbackCircuit | None, source: object = None) -> Receipt:
        """Compose and call, the outcome told to the request's circuit: an answer (sent, or refused for good) or a
        retryable failure; neither for a refusal before any call (no phone, a bad address: `local`) nor for anything
        else (a bug, a cancellation), which gives a probe back. A send that fell back to another channel (ZNS to SMS)
        asked that channel's circuit first (`gate`), then took a token of its rate bucket as the lane's own sends of
        it do (`PacedFallback`), and tells each circuit its own provider's outcome (a fallback held: none for the
        fallback's)."""
        ok: bool | None = None
        fell_back: FellBack | None = None
        paced = PacedFallback(lane.buckets, lane is self.emergency, gate, lambda: self.gate.check(source))
        try:  # composed inside: a template that fails gives a probe back too (audit: it held the circuit's probe)
            receipt = await channel.send(compose(clear, self.segment_limit, self.max_segments, paced))
            ok, fell_back = True, receipt.fell_back
            count_webhook_call(clear, None)
            return receipt
        except DeliveryError as err:
            ok, fell_back = None if err.local else not err.retryable, err.fell_back
            count_webhook_call(clear, err)
            raise
        finally:
            if self.circuits is not None:
                self.circuits.settle(clear, verdict, ok, fell_back, gate)

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
