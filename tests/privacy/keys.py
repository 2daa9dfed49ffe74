"""Test keys: a fixed key-encryption key and pepper (never used outside tests)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr

from services.privacy import crypto
from services.privacy.keyring import Clock, Keyring
from services.privacy.settings import PrivacySettings

KEK = bytes(range(32))
PEPPER = b"test-pepper-0123456789"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def keyring(clock: Clock = lambda: NOW) -> Keyring:
    return Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=clock)


def settings() -> PrivacySettings:
    return PrivacySettings(kek=SecretStr(crypto.b64(KEK)), pepper=SecretStr(crypto.b64(PEPPER)))
