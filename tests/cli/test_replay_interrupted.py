"""A replay interrupted mid-transaction (Ctrl-C: `asyncio.run` cancels its task, then every task left) aborts that
transaction before its writer stops: nothing of it commits, and the raw topic's readers (intake reads read_committed)
are not held behind it until the broker's transaction timeout (60 s). A helper's audit suspected they were; on this
aiokafka the abort reaches the broker, and this test holds it so."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka.structs import RecordMetadata

from schemas.events import Family
from schemas.replay import DLQ_REPLAYED
from schemas.topics import DLQ_INTAKE, RAW, scoped
from services.cli import replaying
from services.common import transactions
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.cli.test_replay_outage import letters
from tests.kafkatools import read_all, transactions_settled

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
SETTLED_WITHIN_S = 20.0
"""Well under the replay writer's transaction timeout (aiokafka's 60 s), after which the broker aborts it itself."""


async def test_a_replay_cancelled_mid_transaction_aborts_it(kafka_bootstrap: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    conn = KafkaConnection(bootstrap=kafka_bootstrap)
    namespace = "ri" + naming.unique()
    raw, log = scoped(RAW[Family.DOSSIER], namespace), scoped(DLQ_REPLAYED, namespace)
    await ensure_topics(conn, [raw, log])
    todo = letters(raw.name, 3 * replaying.BATCH)
    acknowledged = transactions.all_sent
    calls: list[int] = []
    main: list[asyncio.Task[object]] = []

    async def then_interrupted(sent: Sequence[asyncio.Future[RecordMetadata]]) -> None:
        """The second transaction's records are on the broker, acknowledged; its commit not yet asked for."""
        await acknowledged(sent)
        calls.append(len(sent))
        if len(calls) == 2:
            main[0].cancel()  # as Ctrl-C cancels `asyncio.run`'s task
            await asyncio.Event().wait()

    async def replay() -> object:
        main.append(asyncio.current_task())  # type: ignore[arg-type]
        return await replaying.replay(conn, namespace, todo, scoped(DLQ_INTAKE, namespace).name, set(), {},
                                      committed.append)

    monkeypatch.setattr(transactions, "all_sent", then_interrupted)
    committed: list[int] = []
    with pytest.raises(asyncio.CancelledError):  # `asyncio.run` then cancels what is left and closes its loop
        await asyncio.wait_for(asyncio.to_thread(asyncio.run, replay()), 60)
    assert committed == [replaying.BATCH], committed
    await transactions_settled(kafka_bootstrap, [raw.name, log.name], SETTLED_WITHIN_S)
    assert len(await read_all(kafka_bootstrap, raw.name, idle=0.5)) == replaying.BATCH  # read_committed
    assert len(await read_all(kafka_bootstrap, log.name, idle=0.5)) == replaying.BATCH
