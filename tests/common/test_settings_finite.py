"""Every float setting of every service refuses `inf` at start, naming its variable (settings audit: `inf` passed
`gt=0`; NOTIFY_DRAIN_S and NOTIFY_LEDGER_KEEP_DAYS crashed every run with OverflowError, NOTIFY_RETRY_CAP_S held a
notification thousands of years, a `*_STOP_DEADLINE_S` of `inf` never forced a stop)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.common.refused import problems, variable
from services.demo.settings import DemoSettings
from services.gateway.settings import GatewaySettings
from services.intake.settings import IntakeSettings
from services.metrics.settings import MetricsSettings
from services.notify.deadline_settings import DeadlineSettings
from services.notify.settings import NotifySettings
from services.privacy.settings import PrivacySettings
from services.simulator.settings import SimulatorSettings

pytestmark = pytest.mark.unit

CLASSES: tuple[type[BaseSettings], ...] = (IntakeSettings, NotifySettings, DeadlineSettings, MetricsSettings,
                                           GatewaySettings, SimulatorSettings, DemoSettings, PrivacySettings)
FLOATS = [(cls, variable(cls, (name,))) for cls in CLASSES for name, field in cls.model_fields.items()
          if field.annotation in (float, float | None)]


def test_the_float_settings_are_found() -> None:
    """The list below is not empty by accident: the settings named in the audit are in it."""
    names = {name for _, name in FLOATS}
    assert {"NOTIFY_DRAIN_S", "NOTIFY_LEDGER_KEEP_DAYS", "NOTIFY_RETRY_CAP_S", "INTAKE_STOP_DEADLINE_S",
            "NOTIFY_DEADLINE_ACK_TIMEOUT_S", "GATEWAY_RATE_PER_S", "DEMO_REFRESH_S"} <= names


@pytest.mark.parametrize(("settings", "name"), FLOATS, ids=[name for _, name in FLOATS])
@pytest.mark.parametrize("value", ["inf", "-inf", "1e999", "nan"])
def test_an_infinite_float_is_refused_naming_its_variable(settings: type[BaseSettings], name: str, value: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`inf` (or a number too large for a float) is a ValidationError naming the variable, not a value in force."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        settings()
    assert any(line.startswith(f"{name}: ") for line in problems(refused.value, settings)), problems(refused.value,
                                                                                                  settings)
