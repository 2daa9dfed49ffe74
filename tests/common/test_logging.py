"""Log lines never carry an exception's message: it may quote a record (the audit's DEBUG crash traceback repeated a
directory's e-mail address and phone number from pydantic's `input_value`)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog
from pydantic import BaseModel, ValidationError

from services.common.logging import _Handler, configure
from services.common.sparse import MOST_KINDS, SparseRecords
from tests.kafkatools import ROOT

pytestmark = pytest.mark.unit
PHONE = "0987654321"


@pytest.fixture(autouse=True)
def root_logger() -> Iterator[None]:
    """`configure` sets the standard logging's root handler and levels: put them back for the tests after."""
    root, quiet = logging.getLogger(), logging.getLogger("aiokafka")
    handlers, level, quiet_level = root.handlers[:], root.level, quiet.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    quiet.setLevel(quiet_level)


class Contact(BaseModel):
    phone: int


@pytest.mark.parametrize("as_json", [True, False])
def test_an_exception_is_logged_by_type_and_place_without_its_message(monkeypatch: pytest.MonkeyPatch,
                                                                      as_json: bool) -> None:
    """A ValidationError quoting an address and a phone, logged with `exc_info` at DEBUG (as a crash's traceback is),
    in JSON and on a terminal: the type and this file's line are there, the values nowhere."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    configure("DEBUG", json=as_json)
    try:
        try:
            Contact.model_validate({"phone": "lan.nguyen@example.vn 0912345678"})
        except ValidationError as exc:
            structlog.get_logger("t").debug("service.crash_traceback", exc_info=exc)
        try:
            raise ValueError("Nguyễn Thị Lan, Thôn Nà Tàng")
        except ValueError:
            structlog.get_logger("t").error("task.failed", exc_info=True)
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "ValidationError at " in text and "< test_logging.py:" in text and "ValueError at test_logging.py:" in text
    assert "0912345678" not in text and "lan.nguyen" not in text and "Nguy" not in text and "Thôn" not in text
    if as_json:
        assert [json.loads(line)["event"] for line in text.splitlines()] == ["service.crash_traceback", "task.failed"]


# what the libraries under the services log through the standard logging, each quoting a phone number: aiokafka's
# message formatting an exception, a logger.exception, asyncio's (and uvloop's) task exception never retrieved and
# exception in a callback (whose lines quote the task's exception and the callback's arguments)
LIBRARIES = f'''
import asyncio, gc, logging, uvloop
from services.common.logging import configure
configure("INFO", json=True)
logging.getLogger("aiokafka.conn").info("Unable connect to %r: %s", "broker:9092", ValueError("{PHONE}"))
logging.getLogger("aiokafka.client").error("Unable connect to %r: %s", "broker:9092", ValueError("{PHONE}"))
try:
    raise ValueError("{PHONE}")
except ValueError:
    logging.getLogger("services.x").exception("failed in %s", "step")

async def boom():
    raise ValueError("{PHONE}")

def callback(value):
    raise ValueError(value)

async def main():
    task = asyncio.ensure_future(boom())
    await asyncio.sleep(0)
    del task
    gc.collect()
    asyncio.get_running_loop().call_soon(callback, "{PHONE}")
    await asyncio.sleep(0.01)

asyncio.run(main())
uvloop.run(main())
'''


def test_the_libraries_standard_logging_is_rendered_without_exception_messages() -> None:
    """Records of the standard logging (aiokafka, asyncio, uvloop, anyone's `logger.exception`) come out as the
    services' own events: JSON lines with level, logger and time, an exception by its type and place, an exception
    argument of the message by its type; asyncio's lines quoting the task and the callback's arguments left out;
    aiokafka's INFO not shown at INFO. The phone number nowhere (before: `logging.lastResort` printed the messages
    and the tracebacks whole, not as JSON)."""
    run = subprocess.run([sys.executable, "-c", LIBRARIES], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert PHONE not in run.stderr + run.stdout
    events = [json.loads(line) for line in run.stderr.splitlines()]
    assert all(set(e) >= {"event", "level", "logger", "timestamp"} for e in events)
    shown = [(e["logger"], e["level"], e["event"], e.get("exception", "").split(" at ")[0]) for e in events]
    assert shown[:2] == [
        ("aiokafka.client", "error", "Unable connect to 'broker:9092': ValueError", ""),
        ("services.x", "error", "failed in step", "ValueError"),
    ]
    loop = [("asyncio", "error", "Task exception was never retrieved", "ValueError")]
    assert shown[2::2] == loop * 2  # asyncio's, then uvloop's
    assert [s[:2] + s[3:] for s in shown[3::2]] == [("asyncio", "error", "ValueError")] * 2
    assert all(e.startswith("Exception in callback") for _, _, e, _ in shown[3::2]) and len(shown) == 6
    assert events[1]["exception"].startswith("ValueError at <string>:")


def test_configure_again_replaces_its_handler_and_shows_aiokafka_below_warning_at_debug_only() -> None:
    """One handler of `configure`'s on the root however many times it runs (beside any other, pytest's here);
    the root at the level asked; aiokafka at WARNING but at DEBUG."""
    root = logging.getLogger()
    others = [h for h in root.handlers if not isinstance(h, _Handler)]  # (the CLI's `main` configures in-process)
    configure("INFO", json=True)
    configure("WARNING", json=True)
    assert len(root.handlers) == len(others) + 1 and root.level == logging.WARNING
    assert logging.getLogger("aiokafka").getEffectiveLevel() == logging.WARNING
    configure("DEBUG", json=True)
    assert len(root.handlers) == len(others) + 1 and root.level == logging.DEBUG
    assert logging.getLogger("aiokafka").getEffectiveLevel() == logging.DEBUG
    structlog.reset_defaults()


THINNED_LINES = '''
import logging, sys
from services.common.logging import configure
configure(sys.argv[1], json=True)
for node in range(300):  # a broker down: each client's try every 100 ms, logged
    logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", node % 3, ConnectionRefusedError())
    logging.getLogger("aiokafka").error("Unable to update metadata from %s", [node % 3])
logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch messages from %s: %s", 1, "NodeNotReadyError")
for _ in range(3):
    logging.getLogger("services.x").error("kept %s", "whole")
'''


@pytest.mark.parametrize(("level", "lines"), [("INFO", 6), ("DEBUG", 604)])
def test_aiokafkas_repeated_lines_are_thinned_below_debug(level: str, lines: int) -> None:
    """While a broker is down aiokafka logs each client's every try (~100 lines a second under one worker in the
    chaos rows): one line per message template every `sparse.EVERY_S`, errors too, the rest counted into the next;
    another template and the services' own lines pass whole; at DEBUG every line."""
    run = subprocess.run([sys.executable, "-c", THINNED_LINES, level], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    events = [(e["logger"], e["event"]) for e in map(json.loads, run.stderr.splitlines())]
    assert len(events) == lines, events[:10]
    if level == "INFO":
        assert events == [("aiokafka", "Unable connect to node with id 0: ConnectionRefusedError"),
                          ("aiokafka", "Unable to update metadata from [0]"),
                          ("aiokafka.consumer.fetcher", "Failed fetch messages from 1: NodeNotReadyError"),
                          *[("services.x", "kept whole")] * 3]


def test_a_thinned_line_says_how_many_were_held_back_and_the_table_stays_bounded() -> None:
    """The next line of a template after `every_s` says how many were held back; errors pass whole unless asked;
    a logger outside the prefix passes untouched; past `MOST_KINDS` templates the table starts afresh."""
    now = [0.0]
    thin = SparseRecords(10.0, lambda: now[0], errors=True, prefix="aiokafka")

    def record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord(name, level, "x.py", 1, msg, ("a",), None)

    first = [thin.filter(record("aiokafka", "try %s")) for _ in range(5)]
    now[0] = 10.0
    later = record("aiokafka", "try %s")
    assert first == [True, False, False, False, False] and thin.filter(later)
    assert later.getMessage() == "try a (4 more held back since the last such line)"
    assert all(thin.filter(record("services.x", "mine %s")) for _ in range(3))
    assert all(SparseRecords(10.0, lambda: 0.0).filter(record("uvicorn", "e %s")) for _ in range(3))
    for n in range(MOST_KINDS + 5):
        thin.filter(record("aiokafka", f"kind {n} %s"))
    assert len(thin.lines._kinds) <= MOST_KINDS
