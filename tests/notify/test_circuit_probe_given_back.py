"""A circuit's probe given to a request that comes to no call is given back (ADR 0032): a Zalo request's SMS fallback
that meets a revocation while it waits for its call, and an SMS whose template fails before its call. Kept, the
probe held every routine SMS of the worker in memory (`Verdict.WAIT`) until the process restarted (audit)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.notification import ChannelKind
from services.notify.jobs import Revoked
from tests.notify.fakes import Calls, FixedClock
from tests.notify.test_circuits import Gateway, http_dispatcher, no_zalo, open_sms_circuit, phone_book, with_contacts
from tests.notify.test_dispatcher import NOON, citizen_sms, settle

pytestmark = pytest.mark.unit


class RevokingGate:
    """The fence's gate, open; `check` raises `Revoked` while `revoking` (the consumer rebalancing mid-call)."""

    revoking = False
    raised = 0

    async def enter(self, source: object = None) -> None:
        return None

    def leave(self, source: object = None) -> None:
        return None

    def check(self, source: object = None) -> None:
        if self.revoking:
            self.raised += 1
            raise Revoked("the routine consumer is rebalancing")


async def an_sms_after(d: object, gateway: Gateway) -> None:
    """A routine SMS submitted now is sent once, the SMS circuit closed by it (it is the probe)."""
    sms, done = with_contacts(citizen_sms("later"), ChannelKind.SMS, phone="0912000000"), Calls()
    await d.submit(sms, done)  # type: ignore[attr-defined]
    await settle(lambda: done.count == 1, "the later SMS sent (it waited for a probe given to nobody)")
    assert gateway.sms_taken[sms.delivery_key] == 1
    assert not d.circuits.is_open("sms")  # type: ignore[attr-defined]


async def test_a_fallback_probe_met_by_a_revocation_is_given_back() -> None:
    """The SMS circuit open, past its interval: a Zalo request ZNS refuses takes the SMS probe for its fallback, and
    its consumer is revoked while it waits to call: the probe is given back, so a later SMS is sent."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock, release_every_s=3600, opener=phone_book)  # the parked are not released
    gate = RevokingGate()
    d.gate = gate  # type: ignore[assignment]
    d.start()
    try:
        await open_sms_circuit(d)
        gateway.sms_down = False
        clock.now += timedelta(seconds=31)  # past the interval: the next SMS call is the probe
        gate.revoking = True  # the consumer rebalances as ZNS refuses: the fallback took the probe, then Revoked
        r = no_zalo("fallback-revoked")
        await d.submit(r, Calls())
        await settle(lambda: gate.raised >= 1, "the fallback revoked")  # raised and settled in one step
        assert gateway.keys["zns", r.delivery_key] == 1 and gateway.keys["sms", r.delivery_key] == 0
        gate.revoking = False
        await an_sms_after(d, gateway)
    finally:
        await d.stop()


async def test_an_sms_probe_whose_template_fails_is_given_back() -> None:
    """The SMS circuit open, past its interval: the probe is a request whose template lacks a parameter (dead-
    lettered before any call): the probe is given back, so a later SMS is sent."""
    gateway, clock = Gateway(), FixedClock(NOON)
    d = http_dispatcher(gateway, clock, release_every_s=3600, opener=phone_book)
    d.start()
    try:
        await open_sms_circuit(d)
        gateway.sms_down = False
        clock.now += timedelta(seconds=31)
        bad, done = with_contacts(citizen_sms("bad"), ChannelKind.SMS, phone="0912000000"), Calls()
        await d.submit(bad.model_copy(update={"params": {}}), done)  # a placeholder its template needs is missing
        await settle(lambda: done.count == 1, "the request that fails its template dead-lettered")
        assert gateway.keys["sms", bad.delivery_key] == 0
        await an_sms_after(d, gateway)
    finally:
        await d.stop()
