"""A notify run that ends while a client starts closes that client: a start that fails or is cancelled part way has
connected aiokafka's client already (its metadata task, its sockets; a group consumer its heartbeat), and whatever the
run does not close stays open in the process, one more at every restart of the run (leak audit, measured against a
real broker: a key store whose restore failed left its consumer fetching the key topics, 1 socket and 6 tasks more
per restart; an erasure-notice consumer cancelled while joining its group, a member that kept heartbeating)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from services.common import clients
from services.common.changelog import RestoreStalled
from services.common.closing import close_all_within
from services.common.settings import KafkaConnection
from services.notify import app as app_module
from services.notify.app import NotifyApp
from services.notify.erasures import NoticeSender
from services.notify.policy import Backoff
from services.notify.settings import NotifySettings
from services.notify.subscribers import Subscriber
from services.privacy import crypto
from services.privacy.settings import PrivacySettings
from tests.faults import StartingClient
from tests.privacy.keys import KEK, PEPPER

pytestmark = pytest.mark.unit


async def test_a_producer_whose_start_fails_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's producer is stopped when its start fails (the broker gone after the bootstrap)."""
    producer = StartingClient()

    async def nothing(*_: Any) -> None:
        return None

    monkeypatch.setattr(app_module, "ensure_topics", nothing)
    monkeypatch.setattr(clients, "producer", lambda *_, **__: producer)
    supervisor = SimpleNamespace(spawn=None, spawn_if_running=None, health=SimpleNamespace(set_ready=lambda *_: None),
                                 stop=asyncio.Event())
    app = NotifyApp(NotifySettings(deadlines=False), supervisor)  # type: ignore[arg-type]
    with pytest.raises(KafkaConnectionError):
        await app.run()
    assert producer.stopped


async def test_a_consumer_whose_start_fails_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the run's two group consumers is stopped when its start fails."""
    consumer = StartingClient()
    monkeypatch.setattr(clients, "consumer", lambda *_, **__: consumer)
    app = NotifyApp(NotifySettings(deadlines=False), None)  # type: ignore[arg-type]
    opened: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    with pytest.raises(KafkaConnectionError):
        async with AsyncExitStack() as stack:
            stack.push_async_callback(close_all_within, "notify", opened)  # as `run` does, before the consumers
            await app._consumer(stack, opened, "routine", ["t"], None, None, None)  # type: ignore[arg-type]
    assert consumer.stopped


async def test_a_key_store_whose_restore_fails_is_stopped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A key store whose restore stalls (the broker gone mid-restore) is stopped: its consumer, started and assigned
    every key partition, went on fetching them for the life of the process."""
    monkeypatch.setenv("PRIVACY_KEK", crypto.b64(KEK))
    monkeypatch.setenv("PRIVACY_PEPPER", crypto.b64(PEPPER))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    stores: list[_Store] = []

    class _Store:
        def __init__(self, *_: Any, **__: Any) -> None:
            self.stopped = False
            stores.append(self)

        async def start(self) -> None:
            raise RestoreStalled("key store restore: nothing read for 60 s")

        async def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(app_module, "KeyStore", _Store)
    app = NotifyApp(NotifySettings(deadlines=False), None, PrivacySettings())  # type: ignore[arg-type]
    with pytest.raises(RestoreStalled):
        async with AsyncExitStack() as stack:
            await app._opener(stack)
    assert [store.stopped for store in stores] == [True]


async def test_an_erasure_notice_consumer_cancelled_while_it_joins_its_group_is_stopped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A subscriber's erasure-notice consumer whose start (waiting for its group's join) is cancelled, the run ending,
    is stopped: it was left a member of the group, heartbeating, with its sockets and tasks."""
    consumer = StartingClient(fails=False)
    monkeypatch.setattr(clients, "consumer", lambda *_, **__: consumer)
    subscriber = Subscriber.model_validate({"name": "prov-08", "url": "https://hooks.example.vn/h", "secret": "s" * 16,
                                            "include_personal_data": True})
    sender = NoticeSender(KafkaConnection(bootstrap="127.0.0.1:1"), "t", "", subscriber,
                          None, Backoff(), 10_000, 3_000)  # type: ignore[arg-type]
    task = asyncio.create_task(sender.run())
    await asyncio.wait_for(consumer.starting.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert consumer.stopped
