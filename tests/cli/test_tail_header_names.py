"""`commune-bus tail` and `trace` of a raw topic holding a record whose header name is not UTF-8 (a hand-built batch
in a produce request of its own, on the real broker, ADR 0050): they show it and the records around it, exit 0.
Before, aiokafka raised UnicodeDecodeError out of the fetch and each ended in a traceback, exit 1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from schemas.topics import RAW_DOSSIER, scoped
from services.cli.main import app
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.raw_batches import batch, write_batch
from tests.samples import dumps, portal_dossier

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def namespace(kafka_bootstrap: str) -> Iterator[str]:
    """A namespace whose raw dossier topic holds one batch of three dossiers, the second with a header named
    b"\\xff\\xfe"."""
    namespace = "cli" + naming.unique(8)
    raw = scoped(RAW_DOSSIER, namespace)
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [raw]))
    records = [(b"02269", dumps(portal_dossier(f"HN-T{i}")), [(b"commune-code", b"02269")]) for i in range(3)]
    records[1] = (records[1][0], records[1][1], [*records[1][2], (b"\xff\xfe", b"v")])
    asyncio.run(write_batch(kafka_bootstrap, raw.name, 0, batch(records)))
    yield namespace


def _cli(bootstrap: str, namespace: str, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--bootstrap", bootstrap, "--namespace", namespace],
                              env={"COLUMNS": "2000"})


def test_tail_shows_the_record_and_those_around_it(kafka_bootstrap: str, namespace: str) -> None:
    """All three records, the bad name masked by default (a name that is no plain name shows its length) and with
    U+FFFD for its bytes with --show-personal-data."""
    args = ("tail", RAW_DOSSIER.name, "--from-beginning", "--max", "3", "--idle", "5")
    for extra, shown in (((), "<masked name, 6 bytes>"), (("--show-personal-data",), "\ufffd\ufffd")):
        result = _cli(kafka_bootstrap, namespace, *args, *extra)
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        assert "3 records from" in result.output and all(f"HN-T{i}" in result.output for i in range(3))
        assert shown in result.output, result.output


def test_trace_finds_the_record(kafka_bootstrap: str, namespace: str) -> None:
    """`trace` of its dossier code shows its raw step (partition 0, offset 1)."""
    result = _cli(kafka_bootstrap, namespace, "trace", "HN-T1")
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert f"{namespace}.{RAW_DOSSIER.name}/0/1" in result.output, result.output
