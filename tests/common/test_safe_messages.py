"""The project's own errors whose messages are built from no personal data (`SafeMessage`) are logged with their
message when a run fails, restarts or crashes; every other exception by type and place only, and a file the process
could not open by its name (audit B: an 8-partition topic logged `TopicLayoutError` and a line number, no topic)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import services
from schemas.topics import TOPICS
from services.common import clients, runtime
from services.common.admin import TopicLayoutError, check_layout
from services.common.health import Health
from services.common.logging import SafeMessage
from services.common.runtime import Supervisor, supervise
from services.common.settings import ServiceSettings
from services.common.transactions import SendFailed
from services.privacy.crypto import PrivacyError
from services.privacy.settings import PrivacySettings

pytestmark = pytest.mark.unit

REVIEWED = {
    "services.common.admin.TopicLayoutError",  # topic names and partition counts
    "services.common.admin.TopicsNotCreated",  # topic names, Kafka error names, the broker's text about the topic
    "services.common.admin.TopicConfigsNotReconciled",  # the same, for configs
    "services.common.transactions.SendFailed",  # counts and Kafka error names
    "services.privacy.crypto.PrivacyError",  # fixed texts and setting names; never a key, a subject or a value
    "services.privacy.required_topics.TopicsMissing",  # topic names only (2026-12-06)
    "services.common.store_faults.StoreFault",  # a state folder's file, RocksDB's or the system's fixed text
    "services.common.closing.Unanswered",  # a step's or client's fixed name, a number of seconds (2026-12-07)
}
"""The classes marked `SafeMessage` by name, each read raise by raise; subclasses of them inherit the mark."""


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        monkeypatch.setattr(runtime, "log", structlog.get_logger("runtime"))
        yield captured


def _marked() -> set[str]:
    import pkgutil
    from importlib import import_module

    for module in pkgutil.walk_packages(services.__path__, "services."):
        if not module.name.endswith("__main__"):
            import_module(module.name)
    return {f"{c.__module__}.{c.__qualname__}" for c in SafeMessage.__subclasses__()}


def test_the_marked_classes_are_the_reviewed_ones() -> None:
    """A class marked `SafeMessage` directly is one of the reviewed list: marking another is a reviewed change."""
    assert _marked() == REVIEWED


def _layout_error() -> TopicLayoutError:
    spec = TOPICS[0]
    try:
        check_layout([spec], {spec.name: 2 * spec.partitions})
    except TopicLayoutError as exc:
        return exc
    raise AssertionError("no layout error")


def test_a_crash_of_a_safe_error_logs_its_message(logs: list[MutableMapping[str, Any]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`service.crashed` for the metrics worker on an 8-partition topic names the topic and both counts."""
    monkeypatch.setattr(runtime, "configure", lambda _: None)
    monkeypatch.setattr(runtime, "freeze_imports", lambda: None)
    error = _layout_error()

    async def worker(_: Supervisor) -> None:
        raise error

    with pytest.raises(SystemExit):
        runtime.main("safe-test", ServiceSettings(http_port=0), worker)
    crashed = next(e for e in logs if e["event"] == "service.crashed")
    assert crashed["error"] == "TopicLayoutError"
    spec = TOPICS[0]
    wrong = f"{spec.name} has {2 * spec.partitions} partitions, the registry says {spec.partitions}"
    assert wrong in crashed["message"]
    failed = next(e for e in logs if e["event"] == "task.failed")
    assert failed["message"] == crashed["message"]


@pytest.mark.parametrize("error", [
    SendFailed("1 of 3 sends failed (MessageSizeTooLargeError): transaction aborted"),
    PrivacyError("the KEK file cannot be read"),
])
async def test_a_restart_after_a_safe_error_logs_its_message(error: Exception,
                                                             logs: list[MutableMapping[str, Any]]) -> None:
    """`service.restarting` (a Kafka error) and `service.crashed`'s `task.failed` carry the message."""
    stop = asyncio.Event()

    async def worker(_: Supervisor) -> None:
        if any(e["event"] == "service.restarting" for e in logs):
            stop.set()
            return
        raise error

    restart_on = (type(error),)
    await asyncio.wait_for(supervise("safe-test", worker, stop, Health("safe-test"), restart_on), timeout=5)
    restarting = next(e for e in logs if e["event"] == "service.restarting")
    assert restarting["message"] == str(error)


async def test_any_other_error_is_logged_by_type_and_place_only(logs: list[MutableMapping[str, Any]]) -> None:
    """A ValueError quoting a CCCD is logged without its message."""
    async def worker(_: Supervisor) -> None:
        raise ValueError("CCCD 001099012345 is not valid")

    with pytest.raises(ExceptionGroup):
        await asyncio.wait_for(supervise("safe-test", worker, asyncio.Event(), Health("safe-test"), ()), timeout=5)
    failed = next(e for e in logs if e["event"] == "task.failed")
    assert failed["error"] == "ValueError" and "message" not in failed
    assert "001099012345" not in repr(logs)


def test_a_file_the_settings_name_is_logged_by_name(tmp_path: Path, logs: list[MutableMapping[str, Any]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing KAFKA_SSL_CAFILE ends the process logged with the file and the system's reason."""
    monkeypatch.setattr(runtime, "configure", lambda _: None)
    monkeypatch.setattr(runtime, "freeze_imports", lambda: None)
    missing = tmp_path / "ca.pem"

    async def worker(_: Supervisor) -> None:
        clients.connection_options(ServiceSettings(security_protocol="SSL", ssl_cafile=missing))

    with pytest.raises(SystemExit):
        runtime.main("safe-test", ServiceSettings(http_port=0), worker)
    crashed = next(e for e in logs if e["event"] == "service.crashed")
    assert crashed["error"] == "FileNotFoundError"
    assert crashed["file"] == str(missing) and crashed["reason"] == "No such file or directory"


def test_a_kek_file_that_cannot_be_read_is_said_so(tmp_path: Path, logs: list[MutableMapping[str, Any]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """PrivacyError's fixed text reaches the crash line: 'the KEK file cannot be read'."""
    monkeypatch.setattr(runtime, "configure", lambda _: None)
    monkeypatch.setattr(runtime, "freeze_imports", lambda: None)
    privacy = PrivacySettings(kek=None, kek_file=tmp_path / "kek", pepper=None, pepper_file=tmp_path / "pepper")

    async def worker(_: Supervisor) -> None:
        privacy.keyring()

    with pytest.raises(SystemExit):
        runtime.main("safe-test", ServiceSettings(http_port=0), worker)
    crashed = next(e for e in logs if e["event"] == "service.crashed")
    assert crashed["message"] == "the KEK file cannot be read"
