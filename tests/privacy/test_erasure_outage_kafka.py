"""An erasure or a key re-wrap whose broker freezes mid-transaction ends within its bound, saying so, instead of
waiting for ever; run again once the broker is back, it does what is left: the applicant's key is gone, or every key
is under the new KEK, whatever became of the transaction given up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from schemas.personal import ErasureAudit, ErasureMark
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


async def given_up(broker: OwnBroker, work: Awaitable[object], step: str, frozen_at: list[float]) -> None:
    """`work`, whose broker freezes part way (`frozen_at` gets the time), ends in `Unanswered` naming `step`, within
    the bound and the writer's stop of the freeze (a 60 s guard: past it, the work was unbounded); the broker is woken
    however it ends."""
    try:
        with pytest.raises(closing.Unanswered, match=f"{step}: no answer from the broker within {BOUND_S:g} s"):
            await asyncio.wait_for(work, 60)
        took = time.monotonic() - frozen_at[0]
    finally:
        broker.resume()
    assert took < BOUND_S + closing.CLOSE_TIMEOUT_S + 5, f"ended {took:.0f} s after the freeze"


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

    frozen_at: list[float] = []

    def then_frozen(*args: Any, **kwargs: Any) -> ErasureMark:  # the audit record acknowledged, in the transaction
        mark = mark_of(*args, **kwargs)
        own_broker.freeze()
        frozen_at.append(time.monotonic())
        return mark

    monkeypatch.setattr(erase, "erasure_mark", then_frozen)
    await given_up(own_broker, erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester"),
                   "the erasure's transaction", frozen_at)
    monkeypatch.setattr(erase, "erasure_mark", mark_of)
    monkeypatch.setattr(closing, "UNANSWERED_S", 60.0)

    done = await run_again(lambda: erase_cccd(conn, ns, PEPPER, LAN[1], requested_by="operator:tester"))
    assert await live_keys(conn, ns, key.subject) == set()
    audits = [ErasureAudit.model_validate_json(r.value)
              for r in await read_all(own_broker.bootstrap, scoped(PRIVACY_AUDIT, ns).name, idle=1.0)]
    assert audits[0].erasure_id == done.erasure_id and done.keys_destroyed == 1, \
        "the erasure run again destroyed the key: the one given up before its commit was asked for committed nothing"


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

    frozen_at: list[float] = []

    async def then_frozen(*args: Any, **kwargs: Any) -> None:
        await start(*args, **kwargs)
        own_broker.freeze()
        frozen_at.append(time.monotonic())

    monkeypatch.setattr(rewrap, "start_within", then_frozen)
    await given_up(own_broker, rewrap.rewrap_keys(conn, ns, keks, "kek-2", now=NOW), "a re-wrap transaction",
                   frozen_at)
    monkeypatch.setattr(rewrap, "start_within", start)
    monkeypatch.setattr(closing, "UNANSWERED_S", 60.0)
    await run_again(lambda: rewrap.rewrap_keys(conn, ns, keks, "kek-2", now=NOW))
    left = await rewrap.rewrap_keys(conn, ns, keks, "kek-2", now=NOW, dry_run=True)
    assert left.plan.records == [], "every key under kek-2"
