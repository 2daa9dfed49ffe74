"""Privacy tests on the real broker reuse notify's fixtures (namespace, fake providers, the worker process)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notify.conftest import fake, namespace, notify_topics, smtp, start_notify
from tests.privacy import keys

__all__ = ["fake", "key_table", "namespace", "notify_topics", "smtp", "start_notify"]


@pytest.fixture(params=["memory", "disk"])
def key_table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Runs a test twice: with `keys.keyring()` holding its keys in memory, and on disk (ADR 0034) with two subjects
    in memory. Use it with `pytest.mark.usefixtures("key_table")`."""
    if request.param == "memory":
        yield "memory"
        return
    on_disk = keys.OnDisk(tmp_path)
    keys.ON_DISK.append(on_disk)
    try:
        yield "disk"
    finally:
        keys.ON_DISK.remove(on_disk)
        for table in on_disk.opened:
            table.close()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith("privacy-keys-")]
