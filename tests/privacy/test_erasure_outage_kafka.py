"""An erasure or a key re-wrap whose broker freezes mid-transaction ends within its bound, saying so, instead of
waiting for ever; run again once the broker is back, it does what is left: the applicant's key is gone, or every key
is under the new KEK, whatever became of the transaction given up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from schemas.personal import ErasureMark
from schemas.topics import EVENTS_DOSSIER, PRIVACY_AUDIT, scoped
from services.common import closing
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from services.privacy import erase, rewrap
from services.privacy.erase import erase_cccd, erasure_topics, live_keys
from tests import naming
from tests.brokers import OwnBroker, own_broker, run_again  # noqa: F401 - a fixture
from tests.kafkatools import read_all
from tests.privacy.keys import KEK, NOW, PEPPER, keyring
from tests.privacy.writer import person, write_sealed

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]
LAN = ("Nguyễn Thị Lan", "008123456789", "0912345678")
BOUND_S = 5.0
KEK2 = bytes(range(100, 132))


async def given_up(broker: OwnBroker, work: Awaitable[object], step: str) -> None:
    """`work`, whose broker freezes part way, ends in `Unanswered` naming `step`, within the bound and the writer's
    stop (a 60 s guard: past it, the work was unbounded); the broker is woken however it ends."""
    began = time.monotonic()
    try:
        with pytest.raises(closing.Unanswered, match=f"{step}: no answer from the broker within {BOUND_S:g} s"):
            await asyncio.wait_for(work, 60)
        took = time.monotonic() - began
    finally:
        broker.resume()
    assert took < BOUND_S + closing.CLOSE_TIMEOUT_S + 10, f"ended after {took:.0f} s"


async def test_an_erasure_on_a_frozen_broker_ends_and_a_second_one_finishes_it(
        own_broker: OwnBroker, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Frozen mid-transaction, once its audit record was acknowledged: `Unanswered` within the bound and the writer's
    stop (it waited for ever, a cancelled one too: the cancellation waited for the abort); once the broker is back, an
    erasure run again leaves no live key."""
    monkeypatch.setattr(closing, "UNANSWERED_S", BOUND_S)
    conn = KafkaConnection(bootstrap=own_broker.bootstrap)
    ns = "eo" + naming.unique()
    await ensure_topics(conn, [*erasure_topics(ns), scoped(EVENTS_DOSSIER, ns)])
    [lan] = await write_sealed(own_broker.bootstrap, ns, keyring(), [person("TL-1", *LAN)])
    [key] = lan.keys
    mark_of = erase.erasure_mark

    def then_frozen(*args: Any, **kwargs: Any) -> ErasureMark:  # the audit record acknowledged, in the transaction
        mark = mark_of(*args, **kwargs)
        own_broker.freeze()
        return mark

    monkeypatch.setattr(erase, "erasure_mark", then_frozen)
    await given_up(own_broker, erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester"),
                   "the erasure's transaction")
    monkeypatch.setattr(erase, "erasure_mark", mark_of)
    monkeypatch.setattr(closing, "UNANSWERED_S", 60.0)

    await run_again(lambda: erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester"))
    assert await live_keys(conn, ns, key.subject) == set()
    assert await read_all(own_broker.bootstrap, scoped(PRIVACY_AUDIT, ns).name, idle=1.0), "its audit record"


async def test_a_rewrap_on_a_frozen_broker_ends_and_a_second_one_finishes_it(
        own_broker: OwnBroker, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Frozen once the re-wrap's writer has started: `Unanswered` within the bound and the writer's stop; once the
    broker is back, a re-wrap run again leaves no key under the old KEK."""
    monkeypatch.setattr(closing, "UNANSWERED_S", BOUND_S)
    conn = KafkaConnection(bootstrap=own_broker.bootstrap)
    ns = "ew" + naming.unique()
    await ensure_topics(conn, [*erasure_topics(ns), scoped(EVENTS_DOSSIER, ns)])
    await write_sealed(own_broker.bootstrap, ns, keyring(), [person("TL-1", *LAN)])
    keks = {"kek-1": KEK, "kek-2": KEK2}
    start = rewrap.start_within

    async def then_frozen(*args: Any, **kwargs: Any) -> None:
        await start(*args, **kwargs)
        own_broker.freeze()

    monkeypatch.setattr(rewrap, "start_within", then_frozen)
    await given_up(own_broker, rewrap.rewrap_keys(conn, ns, keks, "kek-2", now=NOW), "a re-wrap transaction")
    monkeypatch.setattr(rewrap, "start_within", start)
    monkeypatch.setattr(closing, "UNANSWERED_S", 60.0)
    await run_again(lambda: rewrap.rewrap_keys(conn, ns, keks, "kek-2", now=NOW))
    left = await rewrap.rewrap_keys(conn, ns, keks, "kek-2", now=NOW, dry_run=True)
    assert left.plan.records == [], "every key under kek-2"
