"""Test keys: a fixed key-encryption key and pepper (never used outside tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from services.privacy import crypto
from services.privacy.disk import DiskKeys
from services.privacy.keyring import Clock, Keyring
from services.privacy.settings import PrivacySettings

KEK = bytes(range(32))
PEPPER = b"test-pepper-0123456789"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@dataclass
class OnDisk:
    """While set (`tests.privacy.conftest.key_table`), `keyring()` keeps its keys on disk (ADR 0034), with `cached`
    subjects in memory: two, so the tests' few subjects are evicted and read back from disk."""

    parent: Path
    cached: int = 2
    opened: list[DiskKeys] = field(default_factory=list)


ON_DISK: list[OnDisk] = []


def keyring(clock: Clock = lambda: NOW) -> Keyring:
    table = None
    if ON_DISK:
        table = DiskKeys(ON_DISK[-1].parent, ON_DISK[-1].cached)
        ON_DISK[-1].opened.append(table)
    return Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=clock, table=table)


def settings() -> PrivacySettings:
    return PrivacySettings(kek=SecretStr(crypto.b64(KEK)), pepper=SecretStr(crypto.b64(PEPPER)))
