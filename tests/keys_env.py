"""The test keys of `tests.privacy.keys` as PRIVACY_* variables: intake seals applicants' personal data (ADR 0015),
so every service a test or the chaos command starts needs them (unless the environment names others)."""

from __future__ import annotations

import os

PRIVACY_ENV = {"PRIVACY_KEK": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",  # bytes(range(32))
               "PRIVACY_PEPPER": "dGVzdC1wZXBwZXItMDEyMzQ1Njc4OQ"}  # b"test-pepper-0123456789"


def apply() -> None:
    for name, value in PRIVACY_ENV.items():
        os.environ.setdefault(name, value)
