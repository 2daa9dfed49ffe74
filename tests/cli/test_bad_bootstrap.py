"""A malformed bootstrap address (`--bootstrap`, `KAFKA_BOOTSTRAP`) is refused as a setting: one line naming the
variable, exit 2, never the value; it was a traceback of aiokafka's once a client was made (ValueError for a port
that is no number, OverflowError past 65535, UnicodeEncodeError for a byte not ASCII; audit)."""

from __future__ import annotations

import sys

import pytest

from services.cli import main as cli_main
from services.common import logging as cli_logging
from services.common.refused import BAD_SETTINGS
from services.common.settings import KafkaConnection

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", "[::1", "\udcff:1",
                                       "a:1,,b:2", "127.0.0.1:9092 9093", "host:"])
def test_a_malformed_bootstrap_is_one_line(bootstrap: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["commune-bus", "tail", "commune.dossier", "--bootstrap", bootstrap])
    monkeypatch.setattr(cli_logging, "configure", lambda *_, **__: None)  # the process's, not this test's
    with pytest.raises(SystemExit) as ended:
        cli_main.main()
    err = capsys.readouterr().err
    assert ended.value.code == BAD_SETTINGS and err.startswith("commune-bus: KAFKA_BOOTSTRAP: "), err
    assert len(err.strip().splitlines()) == 1 and bootstrap not in err


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", " a:1 , b:2", "[::1]:9092,[fd00::7]:19092",
                                       "kafka-0.kafka.svc.cluster.local:9092", "broker_1:9092", "k:65535",
                                       "kafka.ns.svc.cluster.local.:9092", "[fe80::1%eth0]:9092", "localhost"])
def test_addresses_as_kafka_takes_them_are_kept(bootstrap: str) -> None:
    assert KafkaConnection(bootstrap=bootstrap).bootstrap == bootstrap
