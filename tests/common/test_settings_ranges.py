"""Every number a service is configured with has a range, both ends, and a value past either end is refused at start
naming its variable (settings audit, 2026-12-05: 47 numeric settings had no upper bound, and some huge finite values
broke a service where it ran, not where it started: `NOTIFY_WRITE_TIMEOUT_MS` of 2^31 became the 32-bit timeout of
every produce request, `NOTIFY_ROUTINE_WORKERS` of 10^15 started that many tasks, `NOTIFY_RETRY_CAP_S` of 10^15 held a
notification for millions of years; `INTAKE_TRANSACTION_TIMEOUT_MS` of 1 failed every start)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import annotated_types
import pytest
from aiokafka.protocol.produce import ProduceRequest_v7
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.common.refused import problems, variable
from services.common.settings import ConsumerSettings, KafkaConnection, ServiceSettings
from services.gateway.settings import GatewaySettings
from services.intake.settings import IntakeLimits, IntakeSettings
from services.notify.settings import NotifySettings
from tests.common.test_settings_finite import CLASSES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
UNBOUNDED = {"SIMULATOR_SEED"}
"""A seed is any integer: `random.Random` takes them all."""
BASES = (KafkaConnection, ServiceSettings, ConsumerSettings, IntakeLimits)
"""Parts of the classes checked (`IntakeLimits`: of `IntakeSettings`, which `validate` reads alone)."""


def _numbers() -> list[tuple[type[BaseSettings], str, FieldInfo]]:
    return [(cls, name, field) for cls in CLASSES for name, field in cls.model_fields.items()
            if field.annotation in (int, float, int | None, float | None)]


def _bound(field: FieldInfo, kinds: tuple[type, ...]) -> float | None:
    found = [m for m in field.metadata if isinstance(m, kinds)]
    return None if not found else float(getattr(found[0], type(found[0]).__name__.lower()))


NUMBERS = [(cls, variable(cls, (name,)), field) for cls, name, field in _numbers()]


def test_every_settings_class_of_the_services_is_checked() -> None:
    """A settings class added to a service is in CLASSES (so its numbers get ranges too)."""
    found = set()
    for path in ROOT.glob("services/*/*settings.py"):
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        found |= {obj for _, obj in inspect.getmembers(module, inspect.isclass)
                  if issubclass(obj, BaseSettings) and obj.__module__ == module.__name__ and obj not in BASES}
    assert found and found <= set(CLASSES), found - set(CLASSES)


@pytest.mark.parametrize(("settings", "name", "field"), NUMBERS, ids=[name for _, name, _ in NUMBERS])
def test_a_number_past_either_end_of_its_range_is_refused_naming_its_variable(
        settings: type[BaseSettings], name: str, field: FieldInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ends are declared (but for a seed), and the values just past them are refused: a ValidationError
    naming the variable, as at a service's start (exit status 2, one line)."""
    if name in UNBOUNDED:
        return
    low = _bound(field, (annotated_types.Ge, annotated_types.Gt))
    high = _bound(field, (annotated_types.Le, annotated_types.Lt))
    assert low is not None and high is not None, f"{name}: declare both ends of its range (ge/gt and le/lt)"
    for beyond in (high + 1, high * 10, low - 1):
        text = str(int(beyond)) if field.annotation in (int, int | None) else repr(beyond)
        monkeypatch.setenv(name, text)
        with pytest.raises(ValidationError) as refused:
            settings()
        assert any(line.startswith(f"{name}: ") for line in problems(refused.value, settings)), (text, problems(
            refused.value, settings))


def test_a_write_timeout_past_the_produce_requests_field_is_refused() -> None:
    """Notify's producer sends `write_timeout_ms` as every produce request's timeout, a 32-bit field: 2^31 could not be
    encoded (each ledger write failed, run after run). The longest accepted can be."""
    with pytest.raises(ValidationError):
        NotifySettings(write_timeout_ms=2**31)
    with pytest.raises(Exception, match="format requires"):
        ProduceRequest_v7(None, -1, 2**31, []).encode()  # what aiokafka's sender built
    longest = NotifySettings.model_fields["write_timeout_ms"]
    high = _bound(longest, (annotated_types.Le,))
    assert high is not None
    ProduceRequest_v7(None, -1, int(high), []).encode()


def test_intakes_transaction_timeout_is_at_least_a_second_as_the_others() -> None:
    """1 ms was accepted: it bounds each commit's wait and twice it the start's waits on the broker, so every start
    and commit timed out and the run restarted for ever."""
    with pytest.raises(ValidationError):
        IntakeSettings(transaction_timeout_ms=999)
    assert IntakeSettings(transaction_timeout_ms=1_000).transaction_timeout_ms == 1_000


@pytest.mark.parametrize(("delay_s", "requests_s", "deadline_s", "accepted"), [
    (0, 20, 25.0, True), (0, 21, 25.0, False), (0, 25, 25.0, False), (0, 30, 40.0, True),
    (2, 18, 25.0, True), (2, 19, 25.0, False), (10, 15, 30.0, True), (10, 16, 30.0, False)])
def test_requests_under_way_end_before_the_gateways_stop_deadline(delay_s: float, requests_s: int, deadline_s: float,
                                                                   accepted: bool) -> None:
    """GATEWAY_STOP_DELAY_S, GATEWAY_STOP_REQUESTS_S and the producer's stop (5 s) within GATEWAY_STOP_DEADLINE_S:
    past it, the process ended as if killed before the cancelled requests were answered and their transactions
    aborted."""
    if accepted:
        settings = GatewaySettings(stop_delay_s=delay_s, stop_requests_s=requests_s, stop_deadline_s=deadline_s)
        assert settings.stop_requests_s == requests_s
        return
    with pytest.raises(ValidationError, match="GATEWAY_STOP_REQUESTS_S"):
        GatewaySettings(stop_delay_s=delay_s, stop_requests_s=requests_s, stop_deadline_s=deadline_s)


@pytest.mark.parametrize(("requests_s", "deadline_s", "delay_s"), [
    (18, 25.0, 2.0), (20, 25.0, 0.0), (19, 25.0, 1.0), (10, 30.0, 2.0)])
def test_an_unset_stop_delay_fits_what_the_requests_leave(requests_s: int, deadline_s: float, delay_s: float) -> None:
    """GATEWAY_STOP_DELAY_S unset is 2 s, or what GATEWAY_STOP_REQUESTS_S leaves of the deadline: a deployment that
    set the requests' 20 s, the default before the delay came, still starts (review: it was refused, and a rolling
    upgrade crash-looped). A delay set explicitly past the deadline is still refused (above)."""
    settings = GatewaySettings(stop_requests_s=requests_s, stop_deadline_s=deadline_s)
    assert settings.stop_delay() == delay_s
