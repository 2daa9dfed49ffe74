"""A request deferred or expired as it is handed over writes its ledger entry only while its partition is this
worker's and its consumer answered by the group; otherwise the lanes' fenced attempt decides. A deferral written by
a worker that had lost the partition (a batch fetched before a revocation, or before a cut-off, handled late) could
land after the next owner's done entry; compaction keeps the last entry of a key, and a restore sent it again (audit).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time

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
    async with running(FakeChannel(), clock=FixedClock(TEN_PM), quiet=QUIET) as s:
        s.dispatcher.holds = lambda source: source != SOURCE
        request, done = citizen_sms("revoked"), Calls()
        await s.dispatcher.submit(request, done, SOURCE)
        await settle(lambda: not s.dispatcher._inflight, "dropped: its partition is the next owner's")
        assert not s.producer.to(LEDGER) and done.count == 0
        assert request.notification_id not in s.ledger.deferred


async def test_a_request_handled_while_cut_off_is_deferred_once_the_group_answers() -> None:
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
