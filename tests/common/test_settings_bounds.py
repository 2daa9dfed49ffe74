"""Settings that could only make a service fail, for ever or on every record, are refused at start (audit C: 40 such
values were accepted), and a service given one ends with exit status 2 and one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.errors import InvalidTransactionTimeout
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.common.permanent import PERMANENT
from services.gateway.settings import GatewaySettings
from services.intake.settings import IntakeSettings
from services.metrics.settings import MetricsSettings
from services.notify.settings import NotifySettings
from services.privacy.settings import PrivacySettings
from tests.keys_env import PRIVACY_ENV

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

REFUSED: list[tuple[type[BaseSettings], dict[str, str]]] = [
    (IntakeSettings, {"INTAKE_HEARTBEAT_INTERVAL_MS": "10000"}),  # = the session: evicted at every missed beat
    (IntakeSettings, {"INTAKE_SESSION_TIMEOUT_MS": "9000", "INTAKE_HEARTBEAT_INTERVAL_MS": "3001"}),
    (MetricsSettings, {"METRICS_HEARTBEAT_INTERVAL_MS": "20000"}),
    (NotifySettings, {"NOTIFY_SESSION_TIMEOUT_MS": "6000", "NOTIFY_HEARTBEAT_INTERVAL_MS": "5000"}),
    (IntakeSettings, {"INTAKE_SESSION_TIMEOUT_MS": "3600000"}),  # past the broker's group.max.session.timeout.ms
    (IntakeSettings, {"INTAKE_TRANSACTION_TIMEOUT_MS": "0"}),
    (IntakeSettings, {"INTAKE_TRANSACTION_TIMEOUT_MS": "3600000"}),  # past transaction.max.timeout.ms
    (MetricsSettings, {"METRICS_TRANSACTION_TIMEOUT_MS": "3600000"}),
    (GatewaySettings, {"GATEWAY_TRANSACTION_TIMEOUT_MS": "3600000"}),
    (IntakeSettings, {"INTAKE_MAX_RECORD_BYTES": "0"}),
    (IntakeSettings, {"INTAKE_MAX_RECORD_BYTES": "-1"}),
    (IntakeSettings, {"INTAKE_MAX_RECORD_BYTES": str(64 * 1024 * 1024)}),  # past the raw topics' limit
    (IntakeSettings, {"INTAKE_BATCH_MAX_RECORDS": "0"}),
    (IntakeSettings, {"INTAKE_BATCH_MAX_BYTES": "-5"}),
    (IntakeSettings, {"INTAKE_LOG_LEVEL": "verbose"}),
    (MetricsSettings, {"METRICS_BATCH_MAX_RECORDS": "100000000"}),
    (GatewaySettings, {"GATEWAY_MAX_RECORDS": "0"}),
    (GatewaySettings, {"GATEWAY_KAFKA_TIMEOUT_S": "0"}),
    (GatewaySettings, {"GATEWAY_RETRY_AFTER_S": "-1"}),
    (GatewaySettings, {"GATEWAY_UNVERIFIED_BODY_BYTES": "1048576"}),  # below the body limit: no body at it is read
    (GatewaySettings, {"GATEWAY_HELD_BODY_BYTES_PER_SOURCE": "1048576"}),
    (GatewaySettings, {"GATEWAY_HELD_BODY_BYTES": "20000000", "GATEWAY_HELD_BODY_BYTES_PER_SOURCE": "30000000"}),
    (NotifySettings, {"NOTIFY_SMTP_PORT": "0"}),
    (NotifySettings, {"NOTIFY_DEADLINE_TICK_S": "0"}),
    (NotifySettings, {"NOTIFY_RETRY_BASE_S": "120", "NOTIFY_RETRY_CAP_S": "60"}),
    (PrivacySettings, {"PRIVACY_KEK_ID": "kek-2:c2hvcnQ"}),  # the id:key form of PRIVACY_OLD_KEKS
]


@pytest.mark.parametrize(("settings", "env"), REFUSED, ids=[" ".join(env) for _, env in REFUSED])
def test_a_dangerous_or_contradictory_value_is_refused(settings: type[BaseSettings], env: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each value is a ValidationError when the settings are built."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        settings()


def test_the_defaults_and_a_lower_case_level_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds leave every default (and the tests' fast groups, a heartbeat of a third of 6 s) as they were."""
    monkeypatch.setenv("METRICS_SESSION_TIMEOUT_MS", "6000")
    monkeypatch.setenv("METRICS_HEARTBEAT_INTERVAL_MS", "2000")
    monkeypatch.setenv("INTAKE_LOG_LEVEL", "debug")
    for settings in (GatewaySettings, MetricsSettings, NotifySettings, PrivacySettings):
        settings()
    assert IntakeSettings().log_level == "DEBUG"


def test_a_transaction_timeout_the_broker_refuses_ends_the_process() -> None:
    """InvalidTransactionTimeout is permanent: the runtime ends the process instead of restarting it for ever."""
    assert issubclass(InvalidTransactionTimeout, PERMANENT)


@pytest.mark.parametrize(("module", "env", "variable"), [
    ("services.intake", {"INTAKE_TRANSACTION_TIMEOUT_MS": "0"}, "INTAKE_TRANSACTION_TIMEOUT_MS"),
    ("services.notify", {"NOTIFY_HEARTBEAT_INTERVAL_MS": "10000"}, "NOTIFY_HEARTBEAT_INTERVAL_MS"),
])
def test_a_service_given_one_exits_2_with_one_line(module: str, env: dict[str, str], variable: str) -> None:
    """`python -m` with the value: exit status 2, one line naming the variable, no traceback."""
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **PRIVACY_ENV, **env}
    done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and variable in done.stderr, done.stderr
