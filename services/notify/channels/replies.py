"""What notify takes from a provider's reply, and how much of it it reads. Pure.

A provider is outside our control: whatever it answers may be huge, nested, slow, cut off, or an echo of the
request (a phone number, a header it injects). Notify reads at most `MAX_REPLY_BYTES` of a provider's reply, none
of a webhook subscriber's (`DRAIN_BYTES` at most, to keep the connection), for at most `READ_S` after its status
line, and keeps from it only:
- a message id that is `plain` (at most `MAX_ID_LENGTH` characters of `ID_CHARACTERS`) and does not hold the
  recipient's phone number or Zalo id (`echoes`): it goes to the status topic, which holds no personal data and
  every subscriber reads, and to operators' screens; anything else is not kept;
- a ZNS error code that is an integer of at most `MAX_CODE_DIGITS` digits (else `unexpected`): it becomes a
  delivery's reason, logged and published.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import orjson

from services.privacy.crypto import normalise_phone

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
MAX_CODE_DIGITS: Final = 6
"""A ZNS error code (e.g. -124) kept in a reason has at most this many digits: fewer than any phone number (9 were a
mobile number without its leading 0, or an old CMND)."""
MIN_ECHO_DIGITS: Final = 8
"""A phone number's digits (without 0, 84 or +84 before them) this long or longer found in an id: the id is an
echo of the request. Shorter numbers (a short code) are not looked for."""
MIN_ECHO_CHARACTERS: Final = 6
"""A Zalo user id this long or longer found in an id: an echo."""


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


def provider_id(value: object, contacts: Iterable[str | None] = ()) -> ProviderId:
    """The id a provider answered (`value`, as decoded): a plain string or an integer is kept; None or an empty
    string is no id; anything else (too long, other characters, a float, a bool, an object), or an id that echoes
    one of the recipient's `contacts` (`echoes`: an SMS gateway numbering its receipts by the phone it sent to), is
    refused."""
    if value is None or value == "":
        return ProviderId(None)
    if type(value) is int and abs(value) < 10 ** (MAX_ID_LENGTH - 1):  # not a bool; its digits, perhaps a "-"
        text = str(value)
    elif isinstance(value, str) and PLAIN_ID.fullmatch(value):
        text = value
    else:
        return ProviderId(None, refused=True)
    return ProviderId(None, refused=True) if echoes(text, contacts) else ProviderId(text)


def echoes(text: str, contacts: Iterable[str | None]) -> bool:
    """Whether `text` holds one of `contacts`: a phone number's own digits (without 0, 84 or +84 before them; at
    least `MIN_ECHO_DIGITS`) among its digits, however they are grouped, or a Zalo id as it is."""
    digits = "".join(c for c in text if c.isascii() and c.isdigit())
    for contact in contacts:
        if not contact:
            continue
        # the domestic form (`+84 (0) 912...`, `0084...`, `84...` are all `0912...`), without its 0
        own = "".join(c for c in normalise_phone(contact) if c.isascii() and c.isdigit()).lstrip("0")
        if (len(own) >= MIN_ECHO_DIGITS and own in digits) or (len(contact) >= MIN_ECHO_CHARACTERS and contact in text):
            return True
    return False


def error_code(value: object) -> str:
    """A ZNS error as the tail of a reason: the code if it is an integer of at most `MAX_CODE_DIGITS` digits,
    else `unexpected` (an error text may quote the recipient; a number may be thousands of digits)."""
    if type(value) is int and abs(value) < 10**MAX_CODE_DIGITS:
        return str(value)
    return "unexpected"
