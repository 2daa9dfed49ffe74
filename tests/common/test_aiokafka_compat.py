"""The one aiokafka work-around (services/common/aiokafka_compat.py) still matches the installed aiokafka."""

from __future__ import annotations

import ast
import asyncio
import gc
import inspect
import textwrap
from types import SimpleNamespace
from unittest.mock import AsyncMock

import aiokafka
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer import sender

from services.common import aiokafka_compat

pytestmark = pytest.mark.unit


def test_installed_aiokafka_is_the_pinned_version() -> None:
    """Fails when aiokafka is upgraded: re-read sender.py, then update PINNED_VERSION and typings/ together."""
    assert aiokafka.__version__ == aiokafka_compat.PINNED_VERSION, (
        f"aiokafka {aiokafka.__version__} is installed, the work-around was checked against "
        f"{aiokafka_compat.PINNED_VERSION}: re-check services/common/aiokafka_compat.py and typings/aiokafka")


def test_concurrent_transactions_branch_returns_the_module_global() -> None:
    """In sender.py, AddPartitionsToTxn's CONCURRENT_TRANSACTIONS branch returns BACKOFF_OVERRIDE read at run time."""
    handle = sender.AddPartitionsToTxnHandler.handle_response
    tree = ast.parse(textwrap.dedent(inspect.getsource(handle)))
    branches = [node for node in ast.walk(tree) if isinstance(node, ast.If)
                and isinstance(node.test, ast.Compare) and isinstance(node.test.ops[0], ast.Is)
                and isinstance(node.test.comparators[0], ast.Name)
                and node.test.comparators[0].id == "ConcurrentTransactions"]
    assert len(branches) == 1, "the CONCURRENT_TRANSACTIONS branch of AddPartitionsToTxnHandler moved"
    returned = {ret.value.id for ret in ast.walk(branches[0])
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Name)}
    assert "BACKOFF_OVERRIDE" in returned
    # a global read when the response arrives (not a local, a default or a copy taken at import)
    assert "BACKOFF_OVERRIDE" in handle.__code__.co_names
    assert "BACKOFF_OVERRIDE" not in handle.__code__.co_varnames
    assert sender.ConcurrentTransactions is ConcurrentTransactions


def _first_add_partitions_backoff() -> float:
    """What aiokafka waits after the first AddPartitionsToTxn of a transaction meets CONCURRENT_TRANSACTIONS."""
    fake_sender = SimpleNamespace(_retry_backoff=0.1, _txn_manager=SimpleNamespace(txn_partitions=set()))
    handler = sender.AddPartitionsToTxnHandler(fake_sender, [TopicPartition("t", 0)])
    response = SimpleNamespace(errors=[("t", [(0, ConcurrentTransactions.errno)])])
    backoff: float = handler.handle_response(response)
    return backoff


def test_apply_shortens_the_concurrent_transactions_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """After apply(1), the retry of a CONCURRENT_TRANSACTIONS answer waits 1 ms instead of aiokafka's 20 ms."""
    monkeypatch.setattr(sender, "BACKOFF_OVERRIDE", 0.02)
    assert _first_add_partitions_backoff() == 0.02
    aiokafka_compat.apply(retry_backoff_ms=1)
    assert _first_add_partitions_backoff() == 0.001
    aiokafka_compat.apply(retry_backoff_ms=100)  # never longer than aiokafka's own 20 ms
    assert _first_add_partitions_backoff() == 0.001


def test_apply_refuses_another_aiokafka_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """apply() raises instead of patching a version it was not checked against."""
    monkeypatch.setattr(aiokafka, "__version__", "0.99.0")
    monkeypatch.setattr(sender, "BACKOFF_OVERRIDE", 0.02)
    with pytest.raises(RuntimeError, match=r"aiokafka 0\.99\.0 is not the 0\.14\.0"):
        aiokafka_compat.apply(retry_backoff_ms=1)
    assert sender.BACKOFF_OVERRIDE == 0.02


def test_keep_aborted_transactions_refuses_another_aiokafka_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The abort fix is not laid over a version it was not checked against: a transactional producer is refused."""
    from aiokafka.producer.transaction_manager import TransactionManager

    from services.common import clients
    from services.common.settings import KafkaConnection

    monkeypatch.setattr(aiokafka, "__version__", "0.99.0")
    original = TransactionManager.error_transaction
    monkeypatch.setattr(TransactionManager, "error_transaction", original)
    with pytest.raises(RuntimeError, match=r"aiokafka 0\.99\.0 is not the 0\.14\.0"):
        clients.transactional_producer(KafkaConnection(bootstrap="127.0.0.1:1"), transactional_id="t", client_id="t")
    assert TransactionManager.error_transaction is original


async def _commit_given_up(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """A consumer's commit whose request hangs (a frozen broker), given up on by its caller's timeout, then failing
    (the request times out): what the loop's exception handler was told."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.errors import RequestTimedOutError
    from aiokafka.structs import OffsetAndMetadata

    answer = asyncio.Event()

    async def hanging(request: object) -> object:
        await answer.wait()
        raise RequestTimedOutError()

    coordinator = GroupCoordinator.__new__(GroupCoordinator)  # only what commit_offsets reads, no client
    for name, value in {"group_id": "g", "generation": 1, "member_id": "m", "coordinator_id": 1,
                        "_retry_backoff_ms": 100, "_commit_lock": asyncio.Lock(), "_send_req": hanging}.items():
        setattr(coordinator, name, value)
    monkeypatch.setattr(coordinator, "ensure_coordinator_known", AsyncMock(), raising=False)
    told: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: told.append(context))
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await coordinator.commit_offsets(None, {TopicPartition("t", 0): OffsetAndMetadata(5, "")})
        answer.set()
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()  # asyncio reports an unread failure when the task is collected
    finally:
        loop.set_exception_handler(before)
    return told


async def test_a_commit_given_up_on_fails_quietly_once_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """notify-broker-freeze: each commit notify timed out (5 s) while the broker was frozen logged "Task exception was
    never retrieved" (ERROR) when its request failed 40 s later, aiokafka's shield having dropped the task's only
    reader; with `retrieve_cancelled_commits` (every consumer, `clients.consumer`) nothing is reported."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    monkeypatch.setattr(GroupCoordinator, "_do_commit_offsets", aiokafka_compat._original_do_commit_offsets)
    unpatched = await _commit_given_up(monkeypatch)
    assert [c["message"] for c in unpatched] == ["Task exception was never retrieved"]  # the finding, reproduced
    aiokafka_compat.retrieve_cancelled_commits()
    aiokafka_compat.retrieve_cancelled_commits()  # idempotent
    assert await _commit_given_up(monkeypatch) == []


async def _heartbeat(error_code: int) -> object:
    """One heartbeat of a group coordinator (only what `_do_heartbeat` reads, no client) answered with `error_code`;
    what `heard_at` says of its consumer afterwards."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    async def answer(request: object) -> object:
        return SimpleNamespace(error_code=error_code)

    coordinator = GroupCoordinator.__new__(GroupCoordinator)
    for name, value in {"group_id": "g", "generation": 3, "member_id": "m", "coordinator_id": 1,
                        "_send_req": answer, "_rejoin_needed_fut": asyncio.get_running_loop().create_future(),
                        "_coordinator_dead_fut": asyncio.get_running_loop().create_future()}.items():
        setattr(coordinator, name, value)
    await coordinator._do_heartbeat()
    return aiokafka_compat.heard_at(SimpleNamespace(_coordinator=coordinator))


async def test_a_heartbeat_answered_as_a_members_is_noted_once_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """chaos notify-partition: aiokafka keeps no account of when a consumer's group last answered it as a member, so
    a consumer cut off from the broker could not tell that it may have been evicted. With `track_heard` (every
    consumer, `clients.consumer`), a heartbeat answered with no error (or a rebalance under way) notes when it was
    sent; one answered "unknown member" does not."""
    import time

    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.errors import NoError, RebalanceInProgressError, UnknownMemberIdError

    monkeypatch.setattr(GroupCoordinator, "_do_heartbeat", aiokafka_compat._original_do_heartbeat)
    assert await _heartbeat(NoError.errno) is None  # the finding: nothing kept
    aiokafka_compat.track_heard()
    aiokafka_compat.track_heard()  # idempotent
    before = time.monotonic()
    heard = await _heartbeat(NoError.errno)
    assert isinstance(heard, float) and before <= heard <= time.monotonic()
    assert isinstance(await _heartbeat(RebalanceInProgressError.errno), float)
    assert await _heartbeat(UnknownMemberIdError.errno) is None
