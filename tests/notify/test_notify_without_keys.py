"""`python -m services.notify` without privacy keys is refused at start, as intake is (ADR 0015): applicants' contacts
arrive sealed, and before it started anyway and skipped every citizen's notification as erased, with one warning
(ops audit). `NOTIFY_WITHOUT_PRIVACY_KEYS=true` is the way to start so on purpose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.notify.__main__ import refuse_without_keys
from services.notify.settings import NotifySettings
from services.privacy.settings import PrivacySettings
from tests.kafkatools import ROOT
from tests.keys_env import PRIVACY_ENV

pytestmark = pytest.mark.unit


def test_the_process_ends_at_once_naming_the_keys_it_needs() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIVACY_", "NOTIFY_"))}
    # a broker nobody answers at: a process that got past the check would not end within the timeout
    env |= {"NOTIFY_DEADLINES": "false", "KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-m", "services.notify"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "PRIVACY_KEK" in done.stderr and "NOTIFY_WITHOUT_PRIVACY_KEYS" in done.stderr


def test_keys_or_the_explicit_setting_let_it_start(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("PRIVACY_", "NOTIFY_")):
            monkeypatch.delenv(name)
    with pytest.raises(SystemExit):
        refuse_without_keys(NotifySettings(), PrivacySettings())
    refuse_without_keys(NotifySettings(without_privacy_keys=True), PrivacySettings())
    for name, value in PRIVACY_ENV.items():
        monkeypatch.setenv(name, value)
    refuse_without_keys(NotifySettings(), PrivacySettings())
