"""What notify takes from a provider's reply, and how much of it it reads. Pure.

A provider is outside our control: whatever it answers may be huge, nested, slow, cut off, or an echo of the
request (a phone number, a header it injects). Notify reads at most `MAX_REPLY_BYTES` of a provider's reply, none
of a webhook subscriber's (`DRAIN_BYTES` at most, to keep the connection), for at most `READ_S` after its status
line, and keeps from it only:
- a message id that is `plain` (at most `MAX_ID_LENGTH` characters of `ID_CHARACTERS`): it goes to the
  status topic, which holds no personal data, and to operators' screens; anything else is not kept;
- a ZNS error code that is an integer of at most `MAX_CODE_DIGITS` digits (else `unexpected`): it becomes a
  delivery's reason, logged and published.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import orjson

MAX_REPLY_BYTES: Final = 64 * 1024
"""A provider's reply is read up to this: a JSON receipt is a few hundred bytes; a longer reply is not read on
and its connection is closed, so one reply cannot take a worker's memory (`channels.http`: what it means)."""
DRAIN_BYTES: Final = 4 * 1024
"""A webhook reply means nothing to us (the status code says it all): a reply this short is read to its end so
the connection can be reused; a longer one is left unread and its connection closed."""
READ_S: Final = 1.0
"""Once a 2xx status line is in, its body (at most the bounds above) is read within this, apart from the request's
own timeout: a JSON receipt comes with its headers, and a body that drips, is cut off or cannot be decoded must
not hold a send worker for the whole request timeout (`channels.http`: what an unread body means)."""
MAX_ID_LENGTH: Final = 128
"""The longest provider message id kept: ids are UUIDs (36), hex digests (64) or numbers, with a prefix."""
ID_CHARACTERS: Final = "A-Za-z0-9._:-"
"""The characters of a kept id: ASCII letters, digits, `.`, `_`, `:` and `-` (no space, control, quote, `=`, `@`
or `/`, so no header, line break, terminal escape, `key=value` text or e-mail address passes)."""
PLAIN_ID: Final = re.compile(rf"[{ID_CHARACTERS}]{{1,{MAX_ID_LENGTH}}}", re.ASCII)
MAX_CODE_DIGITS: Final = 9
"""A ZNS error code (e.g. -124) kept in a reason has at most this many digits."""


@dataclass(frozen=True)
class ProviderId:
    """A provider's message id as notify keeps it: `value` if plain, else None; `refused` when one was answered
    but not kept (counted and logged by the dispatcher, never its text)."""

    value: str | None
    refused: bool = False


def decode(body: bytes) -> dict[str, object]:
    """The reply as a JSON object, or `{}` when it is none (not JSON, not UTF-8, nested past orjson's 1,024
    levels, a number past 1e308, an array)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def provider_id(value: object) -> ProviderId:
    """The id a provider answered (`value`, as decoded): a plain string or an integer is kept; None or an empty
    string is no id; anything else (too long, other characters, a float, a bool, an object) is refused."""
    if value is None or value == "":
        return ProviderId(None)
    if type(value) is int and abs(value) < 10 ** (MAX_ID_LENGTH - 1):  # not a bool; its digits, perhaps a "-"
        return ProviderId(str(value))
    if isinstance(value, str) and PLAIN_ID.fullmatch(value):
        return ProviderId(value)
    return ProviderId(None, refused=True)


def error_code(value: object) -> str:
    """A ZNS error as the tail of a reason: the code if it is an integer of at most `MAX_CODE_DIGITS` digits,
    else `unexpected` (an error text may quote the recipient; a number may be thousands of digits)."""
    if type(value) is int and abs(value) < 10**MAX_CODE_DIGITS:
        return str(value)
    return "unexpected"
