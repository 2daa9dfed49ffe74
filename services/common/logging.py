"""structlog set-up: JSON lines in production, readable on a terminal. No personal data in events.

The standard `logging` module's records (aiokafka, uvicorn, aiohttp, asyncio's "Task exception was never retrieved")
go through the same rendering (`structlog.stdlib.ProcessorFormatter` on the root logger's one handler): before, they
reached stderr through `logging.lastResort`, tracebacks whole with the exception's message, which may quote a record.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from contextlib import suppress
from typing import Any

import structlog
from aiokafka.errors import TopicAuthorizationFailedError

from services.common.sparse import SparseRecords

QUIET_LIBRARIES = ("aiokafka",)
"""Loggers kept at WARNING unless the level is DEBUG: aiokafka says INFO at every rebalance and coordinator change
(before, the standard logging's records showed from WARNING only, whatever the level)."""
THINNED = "aiokafka"
"""Loggers whose repeated lines pass one per message template every `sparse.EVERY_S`, errors too, the next saying
how many were held back: while a broker is down aiokafka retries every 100 ms (`retry_backoff_ms`) per client and
logs each try (a 3-broker cluster's node killed under one worker: ~100 lines a second, "Unable connect to node with
id %s" and "Unable to update metadata from %s": 122,000 lines in the logs of one morning's chaos runs)."""


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root logger's handler `configure` installs (and replaces when called again)."""


class _Stderr:
    """Standard error as it is when a line is written, not when `configure` ran: the CLI configures logging in its
    `main`, which tests call in-process under a capture that is closed after them (later lines would fail)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "INFO", json: bool | None = None, *, cache: bool = True) -> None:
    """Render structlog's events and the standard logging's records as JSON lines (or readably on a terminal) on
    standard error, from `level`. `cache=False` (the CLI) leaves loggers uncached: one configured in a test's process
    would otherwise keep this set-up whatever the next test configures."""
    json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    number = logging.getLevelName(level.upper())
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            exception_without_message,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
    handler = _Handler(_Stderr())
    if number > logging.DEBUG:  # debugging, every line is wanted
        handler.addFilter(SparseRecords(errors=True, prefix=THINNED))
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            foreign_message,
            exception_without_message,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        use_get_message=False,  # `foreign_message` formats the message itself, its exception arguments by type
        pass_foreign_args=True,
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if number <= logging.DEBUG else logging.WARNING)


class _TypeName:
    """An exception argument of a log message, shown by its type's name (`%s` and `%r` alike)."""

    def __init__(self, exc: BaseException) -> None:
        self.name = type(exc).__name__

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


def _named(arg: Any) -> Any:
    return _TypeName(arg) if isinstance(arg, BaseException) else arg


def foreign_message(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A standard logging record's message (`event`) with its exception arguments shown by type, never by message
    (aiokafka's "Unable connect to %r: %s" quotes an exception's text); an exception logged as the message itself
    is its type. asyncio's messages are pre-formatted, with the reprs of what failed: "Task exception was never
    retrieved" is followed by `future: <Task ... exception=ValueError('...')>`, "Exception in callback f(...)" quotes
    the callback's arguments: only their first line is kept, up to the first repr (`(` or `<`)."""
    args = event.pop("positional_args", None)
    record = event.get("_record")
    if not isinstance(record, logging.LogRecord):
        return event
    if isinstance(record.msg, BaseException):
        event["event"] = type(record.msg).__name__
        return event
    message = str(record.msg)
    if args:
        named = {k: _named(v) for k, v in args.items()} if isinstance(args, Mapping) else tuple(map(_named, args))
        with suppress(TypeError, ValueError, KeyError):  # the template and its arguments disagree: the template alone
            message = message % named
    if record.name == "asyncio" or record.name.startswith("asyncio."):
        first = message.split("\n", 1)[0]
        cut = min((i for i in (first.find("("), first.find("<")) if i >= 0), default=len(first))
        message = first[:cut].rstrip()
    event["event"] = message.rstrip()  # uvicorn's "Exception in ASGI application\n"
    return event


def exception_without_message(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """An event's `exc_info` rendered as the exception's type and the frames it passed (`file:line`, innermost
    first), never its message: a message may quote a record (pydantic's repeats the input value, an address or a
    phone number), and structlog's own renderers print it whole."""
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if isinstance(exc, BaseException):
        event["exception"] = f"{type(exc).__name__} at {where(exc, frames=None)}"
    return event


MESSAGE_CHARS = 1000
"""A safe message is logged up to this many characters (a layout error names every topic it found wrong)."""


class SafeMessage(Exception):
    """The base of the project's own errors whose message is logged: built only from values that are no personal
    data (topic names, partition and record counts, setting and file names, Kafka error names), never from a record's
    value, key or headers, nor an id or name taken from input. A class is marked after its every `raise` was read
    for that; a new `raise` of a marked class keeps to it. Every other exception is logged by type and place."""


def error_fields(exc: BaseException) -> dict[str, str]:
    """The fields an exception is logged with: `error` (its type) and `where` (`file:line`s); `message` as well for a
    `SafeMessage`; `topics` for a write or read the broker refused (a topic name is no personal data: the operator
    needs it to mend the ACL); `file` and `reason` (the system's fixed text, "No such file or directory") for an
    `OSError` about a file, and for a RocksDB store's disk fault (`store_fault`): the files a service opens are those
    its settings name and its state folders, never a name from input."""
    fields = {"error": type(exc).__name__, "where": where(exc)}
    if isinstance(exc, TopicAuthorizationFailedError) and (topics := refused_topics(exc)):
        fields["topics"] = topics
    if isinstance(exc, SafeMessage):
        fields["message"] = str(exc)[:MESSAGE_CHARS]
    elif isinstance(exc, OSError) and exc.filename is not None:
        fields["file"] = os.fsdecode(exc.filename)
        fields["reason"] = exc.strerror or ""
    elif (fault := store_fault(exc)) is not None:
        fields["file"], fields["reason"] = fault
    return fields


_STORE_STATUSES = ("IO error: ", "Corruption: ")
"""How RocksDB's text of a failed disk operation begins (rocksdict raises it as a bare `Exception`)."""
_STORE_FILE = re.compile(r"(/[^\s:,]+)")
_FIXED = re.compile(r"[A-Za-z][A-Za-z ]*")
_OS_REASONS = sorted({os.strerror(n) for n in errno.errorcode}, key=len, reverse=True)
_OS_ERROR = re.compile(r" \(os error (\d{1,4})\)$")
"""How rocksdict ends a failed write of a file of its own (`File too large (os error 27)`)."""


def store_fault(exc: BaseException) -> tuple[str, str] | None:
    """(file, reason) of a RocksDB store's disk fault (full, unwritable, damaged), None for anything else: the
    store's file, or "?" (a state folder's, never a name from input), and the status with the system's or RocksDB's
    fixed text ("IO error: File too large", "Corruption: block checksum mismatch"), never the rest of the message.
    Before, a full disk ended a service with `error=Exception` and a place, nothing naming the folder or the cause."""
    text = str(exc) if type(exc) is Exception else ""
    status = next((s for s in _STORE_STATUSES if text.startswith(s)), None)
    if status is None:  # rocksdict's own file (its settings, beside RocksDB's): the system's error, numbered
        number = _OS_ERROR.search(text)
        return ("?", f"IO error: {os.strerror(int(number.group(1)))}") if number is not None else None
    files = _STORE_FILE.findall(text)
    rest = text[len(status):]
    cause = next((r for r in _OS_REASONS if r in rest), None)
    if cause is None:
        fixed = _FIXED.match(rest)
        cause = fixed.group(0).strip() if fixed is not None else ""
    return files[-1] if files else "?", f"{status}{cause}"


TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
"""What Kafka accepts as a topic's name: an argument that is not one (a sentence) is not logged."""


def refused_topics(exc: TopicAuthorizationFailedError) -> str:
    """The topics aiokafka names in an authorization refusal (its one argument: a topic, or a set of them from
    AddPartitionsToTxn), comma-separated and sorted; "" when the argument is anything else."""
    named = exc.args[0] if exc.args else None
    names = [named] if isinstance(named, str) else list(named) if isinstance(named, set | frozenset | list) else []
    if not names or not all(isinstance(n, str) and TOPIC_NAME.fullmatch(n) for n in names):
        return ""
    return ",".join(sorted(set(names)))


def where(exc: BaseException, frames: int | None = 3) -> str:
    """The innermost `frames` of `exc`'s traceback (all with None) as `file:line`, innermost first; no message: it
    may quote personal data."""
    tb = list(traceback.extract_tb(exc.__traceback__))[-frames if frames is not None else 0:]
    return " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(tb)) or "?"
