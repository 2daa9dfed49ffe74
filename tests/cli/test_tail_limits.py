"""`commune-bus tail` stops where it is told on a busy topic: after exactly `--max` records (the limit was checked
only between fetched batches, each printed whole: `--max 3` printed 6,114 records), and at once on Ctrl-C, saying
how many it showed, with the status of SIGINT (130)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from schemas.topics import RAW_DOSSIER, scoped
from services.cli.main import app
from services.common.admin import ensure_topics
from services.common.settings import KafkaConnection
from tests import naming
from tests.kafkatools import produce

pytestmark = pytest.mark.kafka
RECORDS = 3000


@pytest.fixture(scope="module")
def busy(kafka_bootstrap: str) -> tuple[str, str]:
    """A namespace whose raw dossier topic holds `RECORDS` records, spread over its partitions; (bootstrap,
    namespace)."""
    namespace = "cli" + naming.unique(8)
    topic = scoped(RAW_DOSSIER, namespace)
    asyncio.run(ensure_topics(KafkaConnection(bootstrap=kafka_bootstrap), [topic]))
    asyncio.run(produce(kafka_bootstrap, topic.name, [
        (f"{n % 50:05d}".encode(), orjson.dumps({"n": n, "note": "x" * 200}), [("commune-code", b"02269")])
        for n in range(RECORDS)]))
    return kafka_bootstrap, namespace


def panels(output: str, topic: str) -> int:
    return len(re.findall(rf"{re.escape(topic)} \[\d+:\d+\]", output))


def test_max_prints_exactly_that_many_records_of_a_busy_topic(busy: tuple[str, str]) -> None:
    """`--max 3` on a topic of 3,000 records: three panels and "3 records from ..." (before: the whole first batch)."""
    bootstrap, namespace = busy
    result = CliRunner().invoke(app, ["tail", "commune.raw.dossier", "--from-beginning", "--max", "3", "--idle", "20",
                                      "--bootstrap", bootstrap, "--namespace", namespace], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    topic = scoped(RAW_DOSSIER, namespace).name
    assert panels(result.output, topic) == 3
    assert f"3 records from {topic}" in result.output


# as a terminal's Ctrl-C reaches it: SIGINT handled by Python (a shell that started the tests in the background may
# have left it ignored, which a child inherits)
AS_FROM_A_TERMINAL = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                      "sys.argv[0] = 'commune-bus'; from services.cli.main import main; main()")


def test_ctrl_c_ends_tail_at_once_with_its_summary_and_status_130(busy: tuple[str, str], tmp_path: Path) -> None:
    """One SIGINT while `tail --from-beginning` prints a topic of 3,000 records: it ends within seconds, says how many
    records it showed (fewer than all), exit 130 (before: the batch was printed to its end, then exit 0 and no
    summary)."""
    bootstrap, namespace = busy
    topic = scoped(RAW_DOSSIER, namespace).name
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, "tail", "commune.raw.dossier",
                                 "--from-beginning", "--bootstrap", bootstrap, "--namespace", namespace],
                                stdout=stdout, stderr=stderr, env={**os.environ, "COLUMNS": "200"})
        try:
            deadline = time.monotonic() + 60
            while panels(out.read_text(errors="replace"), topic) == 0 and time.monotonic() < deadline:
                assert proc.poll() is None, err.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            interrupted = time.monotonic()
            status = proc.wait(timeout=30)
            took = time.monotonic() - interrupted
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    said = err.read_text()
    assert status == 130, said
    shown = panels(out.read_text(errors="replace"), topic)
    assert f"{shown} record{'s' * (shown != 1)} from {topic}" in said
    assert 0 < shown < RECORDS and took < 5, (shown, took)
