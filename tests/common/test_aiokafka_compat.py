"""The one aiokafka work-around (services/common/aiokafka_compat.py) still matches the installed aiokafka."""

from __future__ import annotations

import ast
import inspect
import textwrap
from types import SimpleNamespace

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
