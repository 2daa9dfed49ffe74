"""`commune-bus erase`: a requester the audit record cannot hold is a one-line error (exit 2) before anything is
erased, not a traceback after the keys were destroyed (Kafka replaced by the privacy tests' in-memory fakes)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from tests.keys_env import PRIVACY_ENV
from tests.privacy.fakes import Broker

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("requester", ["x" * 129, "duty\x1b[2Jofficer", "line\nbreak"])
def test_a_requester_the_audit_record_cannot_hold_is_refused_before_anything(monkeypatch: pytest.MonkeyPatch,
                                                                              requester: str) -> None:
    """Too long, or with control characters: exit 2 with one line saying what --requested-by may be; no key is
    tombstoned, no topic made; the CCCD is not printed."""
    broker = Broker({"k1"})
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--cccd", "008123456789", "--requested-by", requester],
                                env={**PRIVACY_ENV, "COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "--requested-by is 1 to 128 characters, without control characters" in result.output
    assert "Traceback" not in result.output and "008123456789" not in result.output
    assert broker.committed == [] and broker.topics_made == 0


def test_a_requester_that_fits_erases(monkeypatch: pytest.MonkeyPatch) -> None:
    """128 characters fit: the keys go, with their audit record, and the subject (not the CCCD) is printed."""
    broker = Broker({"k1"})
    broker.install(monkeypatch)
    result = CliRunner().invoke(app, ["erase", "--cccd", "008123456789", "--requested-by", "x" * 128],
                                env={**PRIVACY_ENV, "COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "1 keys destroyed" in result.output and "008123456789" not in result.output
    assert len(broker.committed) == 2
