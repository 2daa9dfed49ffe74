"""A run whose start fails part way closes what it opened (no broker): the key store's folder on disk above all
(review of ADR 0034: one more folder at each restart of the run in a broker outage, never removed)."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from services.intake import worker as worker_module
from services.intake.settings import IntakeSettings
from services.intake.worker import IntakeWorker
from services.privacy import crypto
from services.privacy import store as store_module
from services.privacy.disk_folder import KEPT_PREFIX, PREFIX
from services.privacy.store import KeyStore
from tests.faults import StartingClient
from tests.intake.test_intake_assignment import FakeSupervisor
from tests.privacy.keys import KEK, PEPPER

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kept", [True, False], ids=["kept store", "run folder"])
async def test_a_start_failing_after_the_key_store_leaves_no_store_held(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path, kept: bool) -> None:
    monkeypatch.setenv("PRIVACY_KEK", crypto.b64(KEK))
    monkeypatch.setenv("PRIVACY_PEPPER", crypto.b64(PEPPER))
    if kept:
        monkeypatch.setenv("PRIVACY_STATE_DIR", str(tmp_path))
    else:
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    async def nothing(*_: Any, **__: Any) -> None:
        return None

    async def forever(*_: Any) -> None:
        await asyncio.Event().wait()

    def broker_down(*_: Any, **__: Any) -> Any:
        raise KafkaConnectionError("broker down")

    monkeypatch.setattr(store_module.clients, "consumer", lambda *_, **__: _Idle())  # the key store's, the worker's
    monkeypatch.setattr(worker_module, "ensure_intake_topics", nothing)
    monkeypatch.setattr(KeyStore, "start", nothing)
    monkeypatch.setattr(KeyStore, "stop", nothing)
    monkeypatch.setattr(KeyStore, "run", forever)
    monkeypatch.setattr(worker_module.clients, "transactional_producer", broker_down)
    for _ in range(3):  # the runtime restarts a failed run in the same process
        worker = IntakeWorker(IntakeSettings(namespace="t"), FakeSupervisor())  # type: ignore[arg-type]
        with pytest.raises(KafkaConnectionError):
            await worker.run()
    _nothing_held(tmp_path, kept)


@pytest.mark.parametrize("how", ["fails", "cancelled"])
async def test_a_producer_whose_start_fails_or_is_cancelled_part_way_is_stopped(monkeypatch: pytest.MonkeyPatch,
                                                                              tmp_path: Path, how: str) -> None:
    """A run that ends while its transactional producer starts (the broker gone after the bootstrap; another task's
    failure cancelling the run) stops that producer: aiokafka's client was connected, its metadata task running, and
    the run left both behind, one more of each at every restart (leak audit: 5 clients after 8 runs cancelled 2 ms
    into the producer's start, against a real broker)."""
    monkeypatch.setenv("PRIVACY_KEK", crypto.b64(KEK))
    monkeypatch.setenv("PRIVACY_PEPPER", crypto.b64(PEPPER))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    async def nothing(*_: Any, **__: Any) -> None:
        return None

    async def forever(*_: Any) -> None:
        await asyncio.Event().wait()

    producers: list[StartingClient] = []
    starting = asyncio.Event()
    monkeypatch.setattr(store_module.clients, "consumer", lambda *_, **__: _Idle())
    monkeypatch.setattr(worker_module, "ensure_intake_topics", nothing)
    monkeypatch.setattr(KeyStore, "start", nothing)
    monkeypatch.setattr(KeyStore, "stop", nothing)
    monkeypatch.setattr(KeyStore, "run", forever)
    monkeypatch.setattr(worker_module.clients, "transactional_producer",
                        lambda *_, **__: producers.append(StartingClient(how == "fails", starting)) or producers[-1])
    for _ in range(3):  # the runtime restarts a failed run in the same process
        worker = IntakeWorker(IntakeSettings(namespace="t"), FakeSupervisor())  # type: ignore[arg-type]
        run = asyncio.create_task(worker.run())
        await asyncio.wait_for(starting.wait(), 5)
        starting.clear()
        if how == "cancelled":
            run.cancel()
        with pytest.raises(KafkaConnectionError if how == "fails" else asyncio.CancelledError):
            await run
    assert [p.stopped for p in producers] == [True, True, True]


class _Idle:
    """A consumer never started: stopping it is all a failed start does with it."""

    async def stop(self) -> None:
        return None


def _nothing_held(folder: Path, kept: bool) -> None:
    left = sorted(p.name for p in folder.iterdir())
    if not kept:
        assert not [name for name in left if name.startswith(PREFIX)]
        return
    assert left == [f"{KEPT_PREFIX}t-intake-0", f"{KEPT_PREFIX}t-intake-0.lock"]
    fd = os.open(folder / left[1], os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # let go: the next run takes the kept store again
    finally:
        os.close(fd)
