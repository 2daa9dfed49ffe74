"""A refused setting ends every entry point with one line naming its variable and exit status 2, never its value
(pydantic's own report quoted it: a key given in PRIVACY_KEK_ID was printed whole)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from services.common.refused import REDACTED, settings_checked
from services.common.settings import ServiceSettings
from services.notify.settings import NotifySettings
from tests.keys_env import PRIVACY_ENV

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SECRET = "SECRETKEKxSECRETKEKxSECRETKEKxSECRETKEKx0123"
"""A key as `PRIVACY_OLD_KEKS` takes it, given where an id is expected (id:key is 49 characters here)."""


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **PRIVACY_ENV, **env}
    return subprocess.run(argv, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60, check=False)


ENTRY_POINTS = {
    "intake": ([sys.executable, "-m", "services.intake"], {"PRIVACY_KEK_ID": f"kek-2:{SECRET}"}, "PRIVACY_KEK_ID"),
    "notify": ([sys.executable, "-m", "services.notify"], {"PRIVACY_KEK_ID": f"kek-2:{SECRET}"}, "PRIVACY_KEK_ID"),
    "metrics": ([sys.executable, "-m", "services.metrics"], {"KAFKA_SECURITY_PROTOCOL": SECRET},
                "KAFKA_SECURITY_PROTOCOL"),
    "gateway": ([sys.executable, "-m", "services.gateway"], {"GATEWAY_INSTANCE_ID": f"a b {SECRET}"},
                "GATEWAY_INSTANCE_ID"),
    "simulator": ([sys.executable, "-m", "services.simulator"], {"SIMULATOR_LOG_LEVEL": SECRET},
                  "SIMULATOR_LOG_LEVEL"),
    "cli": ([sys.executable, "-c", "from services.cli.main import main; main()", "topics", "create"],
            {"KAFKA_SASL_MECHANISM": SECRET}, "KAFKA_SASL_MECHANISM"),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_an_entry_point_names_the_refused_variable_and_never_its_value(name: str) -> None:
    """Exit status 2, one line `<program>: VARIABLE: problem`, and not a fragment of the value anywhere."""
    argv, env, variable = ENTRY_POINTS[name]
    done = _run(argv, env)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and variable in lines[0], done.stderr[-2000:]
    assert "SECRETKEK" not in done.stdout + done.stderr
    assert "input_value" not in done.stderr and "Traceback" not in done.stderr


class _Quoting(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUOTING_", frozen=True, extra="ignore")

    token: str = "x"

    @field_validator("token")
    @classmethod
    def _loud(cls, value: str) -> str:
        raise ValueError(f"{value} is no token")


def test_a_message_quoting_the_value_has_it_replaced(capsys: pytest.CaptureFixture[str]) -> None:
    """A validator whose message repeats what it refused is shown with the value replaced."""
    with pytest.raises(SystemExit) as ended, settings_checked("test"):
        _Quoting(token=SECRET)
    assert ended.value.code == 2
    assert capsys.readouterr().err == f"test: QUOTING_TOKEN: Value error, {REDACTED} is no token\n"


def test_a_value_that_is_not_json_is_named_by_its_variable(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapping setting given as broken JSON names the variable an operator sets, not pydantic's field
    (`error parsing value for field "rate_per_s"`), and says where JSON stopped without the value."""
    monkeypatch.setenv("NOTIFY_RATE_PER_S", f'{{"sms": "{SECRET}",')
    with pytest.raises(SystemExit) as ended, settings_checked("notify"):
        NotifySettings()
    assert ended.value.code == 2
    assert capsys.readouterr().err == ("notify: NOTIFY_RATE_PER_S: not valid JSON (Expecting property name enclosed "
                                       "in double quotes, at column 56)\n")


@pytest.mark.parametrize("env, line", [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
     "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD must be set with a SASL_* KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "metrics"},
     "KAFKA_SASL_PASSWORD must be set with a SASL_* KAFKA_SECURITY_PROTOCOL"),
])
def test_a_connection_missing_what_its_protocol_needs_is_refused_at_start(env: dict[str, str], line: str) -> None:
    """SASL without a user name or a password: one line and exit 2 before any connection (it was an
    aiokafka traceback: `'NoneType' object has no attribute 'encode'`)."""
    done = _run([sys.executable, "-m", "services.metrics"], env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == f"metrics: Value error, {line}\n"
