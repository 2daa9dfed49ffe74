"""Where each record of a file begins, as an editor numbers lines: `validate` names a bad record by its line.

Pure: the file's bytes and the records `gateway.batch.split_body` made of them in, line numbers out.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence

import orjson

_BREAK = re.compile(rb"\r\n?|\n")
"""A line break as `bytes.splitlines` (and `split_body`'s NDJSON) reads one: CR LF, CR or LF."""
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
"""A JSON string (skipped whole: it may hold brackets and commas) or a structural character."""
_NONBLANK = re.compile(rb"\S")
_NOT_JSON = object()


def record_lines(body: bytes, media_type: str, records: Sequence[bytes]) -> list[int]:
    """The line (1-based, blank lines counted) on which each of `records` begins in `body`: its first non-blank
    byte. `records` are `split_body(body, media_type)`: lines of the file, found in turn; else the file itself (one
    JSON value) or the elements of a JSON array, which `split_body` re-serialised."""
    breaks = [m.end() for m in _BREAK.finditer(body)]

    def line(offset: int) -> int:
        return bisect_right(breaks, offset) + 1

    parsed = _parsed(body) if media_type == "application/json" else _NOT_JSON
    if isinstance(parsed, list):
        return [line(offset) for offset in _element_starts(body)]
    if parsed is not _NOT_JSON:
        return [line(_first_nonblank(body, 0))]
    starts, at = [], 0
    for record in records:  # each a stripped line of `body`, in order: found after the one before
        at = body.index(record, at)
        starts.append(line(at))
        at += len(record)
    return starts


def _parsed(body: bytes) -> object:
    """The JSON value `body` holds; `_NOT_JSON` if it is not JSON (then `split_body` read it as lines)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _first_nonblank(body: bytes, offset: int) -> int:
    found = _NONBLANK.search(body, offset)
    return found.start() if found else offset


def _element_starts(body: bytes) -> list[int]:
    """Where each element of the JSON array `body` (valid JSON) begins: after its `[` or the `,` before it."""
    starts: list[int] = []
    depth = 0
    for token in _TOKEN.finditer(body):
        char = token[0][:1]
        if char == b'"':
            continue
        if char in b"[{":
            depth += 1
        elif char in b"]}":
            depth -= 1
        if depth == 1 and char in b"[,":
            start = _first_nonblank(body, token.end())
            if body[start:start + 1] != b"]":  # `[]`: no element
                starts.append(start)
    return starts
