"""What a record holds, on an operator's terminal: plain text, never rich markup, never terminal control.

Any source may write its raw topic, so a key, a header or a JSON value may hold rich markup
(`[/oops]` stops rich with a MarkupError, `[link=...]` makes a hyperlink), terminal escapes
(colours, OSC 8 hyperlinks, a cleared screen), C1 controls, bidirectional overrides or bytes
that are not UTF-8. Whatever the CLI did not write itself reaches rich through `text` (a `Text`,
never parsed as markup) or `markup` (escaped, inside a markup string of the CLI's own), and JSON
through `json_text`; all of them show each control character as its escape (`\\x1b`, `\\u202e`).
"""

from __future__ import annotations

import re

from rich.text import Text

from schemas.limits import CONTROL

UNSAFE = re.compile(rf"[{CONTROL}\ud800-\udfff]")
"""What a terminal acts on, or what would reorder the line around it: C0 and C1 controls (ESC, BEL, CR...), DEL,
line and paragraph separators, bidirectional embeddings, overrides and isolates (the identifiers' `CONTROL`), and lone
surrogates (no terminal encoding writes them)."""
_UNSAFE_BUT_NEWLINE = re.compile(rf"(?!\n){UNSAFE.pattern}")
_BRACKET = re.compile(r"(\\*)\[")
_TAG_START = re.compile(r"[a-z#/@]")


def counted(n: int, noun: str) -> str:
    """`n` and the noun for as many: "1 record", "0 records", "2 dead letters" (nouns taking an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
"""What follows a `[` that rich may read as a tag's start (`rich.markup.RE_TAGS`)."""
_FENCE = "[none][/none]"
"""An empty tag of the null style: renders nothing, and ends what comes before it."""


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _json_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def visible(value: str, *, newlines: bool = False) -> str:
    """`value` with each control, bidi-control or lone-surrogate character written as its escape (`\\x1b`, `\\u202e`);
    with `newlines`, a newline stays one (multi-line text of the CLI's own making)."""
    return (_UNSAFE_BUT_NEWLINE if newlines else UNSAFE).sub(_escaped, value)


def decoded(raw: bytes | None) -> str:
    """A key's or header's bytes as text: bytes that are not UTF-8 as their escapes (`\\xff`), no value as ""."""
    return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else ""


def text(value: str, style: str = "") -> Text:
    """`value` as a rich `Text`: shown as written (escapes aside), whatever brackets it holds."""
    return Text(visible(value), style=style)


def markup(value: object) -> str:
    """`str(value)` to put inside a markup string of the CLI's own: shown as written (escapes aside) by a console
    without emoji codes, whatever comes after it (the CLI's own text before it never ends in a backslash).

    `rich.markup.escape` is not enough: it leaves a `[` whose tag the value does not close (`[link` before the CLI's
    `=x]` is a tag), a backslash before a `[` that opens no tag is dropped, and a trailing backslash halves before
    the next tag. Here no `[` of the value can open a tag (one that could is followed by an empty tag), the backslash
    rich drops before a plain `[` is added, and trailing backslashes are doubled and closed by an empty tag."""
    shown = visible(str(value))

    def bracket(match: re.Match[str]) -> str:
        backslashes, after = match[1], match.end()
        fence = _FENCE if after == len(shown) or _TAG_START.match(shown, after) else ""
        return (backslashes + "\\" if backslashes else "") + "[" + fence

    escaped = _BRACKET.sub(bracket, shown)
    body = escaped.rstrip("\\")
    return escaped if body == escaped else body + "\\" * 2 * (len(escaped) - len(body)) + _FENCE


def json_text(serialised: str) -> str:
    """A JSON text as a serialiser writes it (raw newlines, if any, only between tokens), with every character
    `UNSAFE` names inside its strings written as a `\\uXXXX` escape: it still reads back as the same value."""
    return _UNSAFE_BUT_NEWLINE.sub(_json_escaped, serialised)
