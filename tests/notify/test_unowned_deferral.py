"""A request deferred or expired as it is handed over writes its ledger entry only while its partition is this
worker's and its consumer answered by the group; otherwise the lanes' fenced attempt decides. A deferral written by
a worker that had lost the partition (a batch fetched before a revocation, or before a cut-off, handled late) could
land after the next owner's done entry; compaction keeps the last entry of a key, and a restore sent it again (audit).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time
from typing import Any

import pytest

from services.notify.jobs import Revoked
from services.notify.policy import QuietHours
from tests.notify.fakes import Calls, FakeChannel, FixedClock
from tests.notify.test_dispatcher import LEDGER, citizen_sms, running, settle

pytestmark = pytest.mark.unit
TEN_PM = datetime(2025, 11, 3, 15, 0, tzinfo=UTC)  # 22:00 in Vietnam: a citizen's quiet hours
QUIET = QuietHours(time(21, 0), time(7, 0))
SOURCE = "routine/p2"


class CutOffGate:
    """The fence's gate while the group has not answered (cut off, ADR 0046): `check` raises `Revoked`, `enter`
    waits; both as the fence does, until `answer()`."""

    def __init__(self) -> None:
        self.answered, self.raised = asyncio.Event(), 0

    def answer(self) -> None:
        self.answered.set()

    async def enter(self, source: object = None) -> None:
        await self.answered.wait()

    def leave(self, source: object = None) -> None:
        return None

    def check(self, source: object = None) -> None:
        if not self.answered.is_set():
            self.raised += 1
            raise Revoked("no word from the group")


async def test_a_request_of_a_partition_revoked_meanwhile_writes_no_deferral() -> None:
    """At 22:00, a citizen SMS of a partition this worker no longer holds: no deferral written, nothing done here
    (the partition's next owner defers it)."""
    async with running(FakeChannel(), clock=FixedClock(TEN_PM), quiet=QUIET) as s:
        s.dispatcher.holds = lambda source: source != SOURCE
        request, done = citizen_sms("revoked"), Calls()
        await s.dispatcher.submit(request, done, SOURCE)
        await settle(lambda: not s.dispatcher._inflight, "dropped: its partition is the next owner's")
        assert not s.producer.to(LEDGER) and done.count == 0
        assert request.notification_id not in s.ledger.deferred


async def test_a_request_handled_while_cut_off_is_deferred_once_the_group_answers() -> None:
    """At 22:00, a citizen SMS handled while the group has not answered: nothing written until it does, then one
    deferral until 07:00, written by the lanes' fenced attempt."""
    async with running(FakeChannel(), clock=FixedClock(TEN_PM), quiet=QUIET) as s:
        gate = CutOffGate()
        s.dispatcher.gate = gate  # type: ignore[assignment]
        request, done = citizen_sms("cut-off"), Calls()
        await s.dispatcher.submit(request, done, SOURCE)
        assert gate.raised >= 1 and not s.producer.to(LEDGER) and done.count == 0
        await asyncio.sleep(0.05)  # the lanes' attempt waits at the fence meanwhile: nothing written
        assert not s.producer.to(LEDGER) and done.count == 0
        gate.answer()
        await settle(lambda: done.count == 1, "deferred by the lanes' fenced attempt")
        assert [m.key for m in s.producer.to(LEDGER)] == [request.notification_id.encode()]
        assert s.ledger.deferred[request.notification_id].not_before == datetime(2025, 11, 4, 0, 0, tzinfo=UTC)


class CountingGate:
    """An open gate that notes its entries and leaves beside the ledger's writes (`journal`)."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    async def enter(self, source: object = None) -> None:
        self.journal.append("enter")

    def leave(self, source: object = None) -> None:
        self.journal.append("leave")

    def check(self, source: object = None) -> None:
        return None


async def test_a_deferral_written_as_it_is_handed_over_is_a_call_a_revocations_drain_waits_for() -> None:
    """At 22:00, a citizen SMS of a partition held and answered is deferred at once, its ledger write inside the
    gate (entered, written, left): a revocation's drain waits for calls under way, so it cannot commit and hand the
    partition over while the deferral is still unacknowledged (review: the write was outside the gate)."""
    async with running(FakeChannel(), clock=FixedClock(TEN_PM), quiet=QUIET) as s:
        journal: list[str] = []
        s.dispatcher.gate = CountingGate(journal)  # type: ignore[assignment]
        send = s.producer.send_and_wait

        async def noted(*args: Any, **kwargs: Any) -> object:
            journal.append("write")
            return await send(*args, **kwargs)

        s.producer.send_and_wait = noted  # type: ignore[method-assign]
        request, done = citizen_sms("answered"), Calls()
        await s.dispatcher.submit(request, done, SOURCE)
        assert done.count == 1 and journal[0] == "enter" and journal[-1] == "leave", journal
        assert journal[1:-1] and set(journal[1:-1]) == {"write"}, journal  # the deferral and its status
