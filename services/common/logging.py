"""structlog set-up: JSON lines in production, readable on a terminal. No personal data in events."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog


def configure(level: str = "INFO", json: bool | None = None) -> None:
    json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            exception_without_message,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


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


def where(exc: BaseException, frames: int | None = 3) -> str:
    """The innermost `frames` of `exc`'s traceback (all with None) as `file:line`, innermost first; no message: it
    may quote personal data."""
    tb = list(traceback.extract_tb(exc.__traceback__))[-frames if frames is not None else 0:]
    return " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(tb)) or "?"
