"""Circuit breakers: a provider that keeps failing gets one probe at a time, not every routine request (ADR 0032).

One circuit per provider channel (SMS, Zalo, e-mail) and one per webhook subscriber (a subscriber's endpoint down
is not every subscriber's). A circuit opens after `failures` retryable failures in a row; while it is open a routine
request is parked (`Dispatcher._park`) without a call, so the lanes and the input keep moving for the channels that
work; after `probe_s` one routine request is let through as the probe: its success closes the circuit, its failure
opens it again for another `probe_s`. Emergencies are never held by a circuit: they are tried on their own back-off
as before, and their outcome counts like any other (a success closes it).

Written here rather than taken from purgatory 3.0.1 or pybreaker 1.4.1 (both read): they take the wall clock (the
dispatcher injects the steady one, `jobs.steady`, and tests move theirs), their half-open state lets every concurrent
call through (32 senders would probe at once), and neither answers "would you let this through?" for a request that
must not be called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

import structlog

from schemas.notification import ChannelKind, NotificationRequest
from services.notify import metrics
from services.notify.channels.base import FellBack

log = structlog.get_logger("notify.circuits")


class Verdict(Enum):
    CALL = "call"  # closed, or an emergency: call as usual
    PROBE = "probe"  # open for `probe_s`: this request is the one probe
    HOLD = "hold"  # open: park without a call
    WAIT = "wait"  # a probe is out: wait a moment in memory for its outcome


@dataclass
class Circuit:
    failed: int = 0
    """Retryable failures in a row."""
    opened_at: datetime | None = None
    """When it opened (None: closed); moved on by each failed probe."""
    since: datetime | None = None
    """When the current outage began: the first opening, kept through failed probes (how long parks grow)."""
    probing: bool = False


def circuit_key(request: NotificationRequest) -> str:
    """The channel, or for a webhook its subscriber (`webhook:subscriber:<name>`): not personal data."""
    if request.channel is ChannelKind.WEBHOOK:
        return f"webhook:{request.recipient.ref}"
    return request.channel.value


class Circuits:
    def __init__(self, failures: int, probe_s: float, clock: Callable[[], datetime]) -> None:
        if failures < 1 or probe_s <= 0:
            raise ValueError("a circuit needs failures >= 1 and probe_s > 0")
        self.failures, self.probe = failures, timedelta(seconds=probe_s)
        self.clock = clock
        self._circuits: dict[str, Circuit] = {}

    def forget(self) -> None:
        """Stop counting (the dispatcher stops): the open circuits leave the gauge."""
        for key, c in self._circuits.items():
            if c.opened_at is not None:
                metrics.CIRCUITS_OPEN.labels(key.split(":", 1)[0]).dec()
        self._circuits.clear()

    def is_open(self, key: str) -> bool:
        c = self._circuits.get(key)
        return c is not None and c.opened_at is not None

    def verdict(self, request: NotificationRequest, key: str | None = None) -> Verdict:
        """Whether `request` may be sent now (through the circuit `key`, its own if None: a fallback names the other
        provider's); a PROBE must be followed by `settle` (a `finally`)."""
        c = self._circuits.get(key or circuit_key(request))
        if c is None or c.opened_at is None or request.is_emergency:
            return Verdict.CALL
        if c.probing:
            return Verdict.WAIT
        if self.clock() < c.opened_at + self.probe:
            return Verdict.HOLD
        c.probing = True
        return Verdict.PROBE

    def hold_for(self, request: NotificationRequest, longest: timedelta, key: str | None = None) -> timedelta:
        """How long a held request is parked: as long as the outage has lasted, between `probe_s` and `longest`
        (a blip's requests wait seconds, an outage of hours' the full park)."""
        c = self._circuits.get(key or circuit_key(request))
        lasted = self.clock() - c.since if c is not None and c.since is not None else timedelta(0)
        return max(self.probe, min(longest, lasted))

    def settle(self, request: NotificationRequest, verdict: Verdict, ok: bool | None,
               fell_back: FellBack | None = None, gate: FallbackCircuit | None = None) -> None:
        """The outcome of a call: `ok` True (the provider answered: sent, or refused for good), False (a retryable
        failure), None (no answer to count: a refusal before any call, a bug, a cancellation; a probe is given back
        for the next request). After a fallback (ZNS refused, then SMS) the request's circuit counts the first
        provider's answer and the fallback's circuit the outcome (review: SMS failures opened Zalo's circuit), under
        the verdict its gate gave (`FallbackCircuit`: a PROBE's outcome closes it or starts another interval). A
        fallback's probe that came to no call (a revocation while it waited for its token, a bug) is given back: kept,
        every routine request of that channel waited for its outcome until the process restarted (audit)."""
        fallback = gate.verdict if gate is not None else Verdict.CALL
        if fell_back is None:
            self._settle(circuit_key(request), request.channel, verdict, ok)
            if fallback is Verdict.PROBE and gate is not None and gate.to is not None:
                self._settle(gate.to.value, gate.to, fallback, None)
            return
        self._settle(circuit_key(request), request.channel, verdict, fell_back.answered)
        self._settle(fell_back.to.value, fell_back.to, fallback, ok)

    def _settle(self, key: str, channel: ChannelKind, verdict: Verdict, ok: bool | None) -> None:
        c = self._circuits.setdefault(key, Circuit())
        if verdict is Verdict.PROBE:
            c.probing = False
        if ok is None:
            return
        now = self.clock()
        if ok:
            if c.opened_at is not None:
                metrics.CIRCUITS_OPEN.labels(channel.value).dec()
                log.warning("notify.circuit_closed", circuit=key, channel=channel.value,
                            open_s=round((now - (c.since or now)).total_seconds(), 1))
            c.failed, c.opened_at, c.since = 0, None, None
            return
        c.failed += 1
        if c.opened_at is None and c.failed >= self.failures:
            c.opened_at = c.since = now
            metrics.CIRCUITS_OPEN.labels(channel.value).inc()
            metrics.CIRCUIT_OPENINGS.labels(channel.value).inc()
            log.warning("notify.circuit_opened", circuit=key, channel=channel.value, failures=c.failed,
                        probe_s=self.probe.total_seconds())
        elif c.opened_at is not None and verdict is Verdict.PROBE:
            c.opened_at = now  # the probe failed: another `probe_s` before the next


class FallbackCircuit:
    """The circuit part of one call's `FallbackGate` (`pacing.PacedFallback`, which then takes the rate token): the
    fallback's circuit (ZNS to SMS: SMS's) decides as it would for a request of its own channel (ADR 0032, amended;
    before, a fallback called the SMS gateway while its circuit was open).
    Open: held, if the request may wait `held_for` (`may_wait`; else called, as a held SMS that expires first is);
    a probe out: held, to wait for its outcome; past the probe interval: the fallback is the one probe. What it said
    is kept in `verdict` for `Circuits.settle`, and tells the dispatcher what a held request does."""

    def __init__(self, circuits: Circuits, request: NotificationRequest, longest: timedelta,
                 may_wait: Callable[[timedelta], bool]) -> None:
        self.circuits, self.request, self.longest, self.may_wait = circuits, request, longest, may_wait
        self.verdict = Verdict.CALL
        self.to: ChannelKind | None = None
        """The fallback asked for (its circuit's key is its name)."""
        self.held_for: timedelta | None = None
        """Set when the open circuit held the fallback: how long the request is parked."""

    @property
    def held(self) -> bool:
        return self.verdict is Verdict.WAIT or self.held_for is not None

    def admit(self, to: ChannelKind) -> bool:
        self.to, self.verdict = to, self.circuits.verdict(self.request, to.value)
        if self.verdict is Verdict.HOLD:
            hold = self.circuits.hold_for(self.request, self.longest, to.value)
            if self.may_wait(hold):
                self.held_for = hold
        return not self.held
