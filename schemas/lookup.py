"""The names a dead letter may carry in clear for `commune-bus trace` to find it by (ADR 0038), and their shapes.

A dead letter is sealed whole (ADR 0026): its event id, subject and trace id are inside the
ciphertext, so a reader without the raw topics (an operator, the gateway) could not tell which
dossier it was. Intake therefore also writes a clear copy of each of them (`dlq.lookup.*`), but
only one of a closed shape that identifies nobody: 1 to 128 ASCII letters, digits, '.', '_', ':'
or '-' (what the gateway's trace takes as a query), at least one digit (an id or a code has one; a
word, perhaps a name, has none), and no number a CCCD, a phone or a CMND could be (`LONG_NUMBER`,
the rule `trace` masks producers' names by). No space, no '@', no control or bidirectional
character, nothing longer: a hostile record cannot put free text there. What intake derives itself is a
hash and is kept as it is: a portal payload's id (`DERIVED_ID_PATTERN`), a 32-hex trace id (intake keeps
a derived one only when what it hashes identifies nobody). Readers check the same shapes: a header that
fails them (a forged one, on a letter never sealed) is not read.
"""

from __future__ import annotations

import re
from typing import Final

from schemas import trace

_G = r"[ .\-_:]"
LONG_NUMBER: Final = re.compile(
    rf"\+?[0-9]{{9,}}|[0-9]{{3}}{_G}[0-9]{{3}}{_G}[0-9]{{3}}(?:{_G}[0-9]{{3}})?"
    rf"|[0-9]{{4}}{_G}[0-9]{{3}}{_G}[0-9]{{3}}|[0-9]{{3}}{_G}[0-9]{{3}}{_G}[0-9]{{4}}"
    rf"|\+84{_G}?[0-9]{{2,3}}{_G}?[0-9]{{3}}{_G}?[0-9]{{3,4}}")
"""A CCCD, a phone or a CMND as ids and URIs hold one: nine digits or more in a row (`/citizens/001099012345`,
`hs-0912345678`), or grouped as such numbers are written (`001-099-012-345`, `0912.345.678`, `+84 912 345 678`);
never a dossier code's groups (`TL-251203-7701`, `000.00.12.H56-241015-0003`) nor a date. See also `GROUPED`."""
_S = r"[ .\-_]"
_DATE = r"[0-9]{2}[ .\-_/][0-9]{2}[ .\-_/][0-9]{4}(?![0-9])"
GROUPED: Final = re.compile(
    rf"(?:(?<![0-9A-Za-z])|(?<=[A-Za-z])(?<![0-9]T)(?=0[0-9]{{2}}|84[0-9]))(?!{_DATE}|[0-9]{{5}}(?![0-9]))"
    rf"(?:0(?:(?:{_S}?[0-9]){{11}}|(?:{_S}?[0-9]){{9}})|84(?:{_S}?[0-9]){{9}})(?!{_S}?[0-9])")
"""A phone (10 digits from a 0, 11 from 84) or a CCCD (12 from a 0) grouped any way by single spaces, dots, dashes
or underscores, at a name's start or after a mark (`0912-345678`, `cccd_079912_345678`, `09.12.34.56.78`; privacy
audit, 2026-12-06), or glued to a letter when its first group has three digits or more, as a phone's or a CCCD's
(`hs0912.345678`, `cccd079912.345678`; a second audit, 2026-12-07): never a national dossier code's province
(`000.00.01.H01-251103-0001`: two digits, review) nor an ISO time (`20251105T083000.123456`). Not a commune code's
group (`02269-00001`), a date (`05.11.2025-01`), a time (`083000-123`, 9 digits) nor a number inside a UUID
(`personal_numbers` passes those over: a UUID's hex is no number)."""
_UUID = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")


def personal_numbers(text: str) -> list[tuple[int, int]]:
    """Where `text` holds a number a CCCD, phone or CMND could be (`LONG_NUMBER`, `GROUPED`), as sorted (start, end)
    spans that do not overlap."""
    spans = [m.span() for m in LONG_NUMBER.finditer(text)]
    grouped = [m.span() for m in GROUPED.finditer(text)]
    if grouped and "-" in text:
        uuids = [m.span() for m in _UUID.finditer(text)]
        grouped = [(a, b) for a, b in grouped if not any(u <= a and b <= v for u, v in uuids)]
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans + grouped):
        if merged and a < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


MAX_LOOKUP_LENGTH: Final = 128
"""An event id's and a subject's own limit (`schemas.envelope.Event`), and the gateway's trace query's."""
LOOKUP_PATTERN: Final = r"^(?=[^0-9]*[0-9])[A-Za-z0-9._:-]{1,128}$"
"""The shape of a lookup value (documented in the dead-letter header schema); `LONG_NUMBER` is checked besides."""
_LOOKUP = re.compile(LOOKUP_PATTERN)
TRACE_ID_PATTERN: Final = r"^[0-9a-f]{32}$"
_TRACE_ID = re.compile(TRACE_ID_PATTERN)
DERIVED_ID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
"""The id intake derives for a portal payload (`services.intake.portal.event_id`: a name-based UUID, SHA-1 of the
commune and the whole payload): a hash no one can reverse, kept even when its hex holds a run of digits."""
_DERIVED_ID = re.compile(DERIVED_ID_PATTERN)


def identifies_nobody(text: str) -> bool:
    """No number in `text` a CCCD, phone or CMND could be, and no e-mail address (an '@')."""
    return "@" not in text and not personal_numbers(text)


def shown_trace_id(traceparent: str | None, source: str | None, event_id: str | None) -> str | None:
    """The trace id of an event's `traceparent` as a log line may show it: None when it is the one derived from a
    source and id that hold a personal number (`trace.derive`, an unkeyed hash anyone can reverse by trying every
    number: 0.24 s for a million, privacy audit; logs are kept where no erasure reaches). A producer's own trace id,
    or one derived from names that identify nobody, is shown."""
    shown = trace.trace_id(traceparent)
    if shown is None or source is None or event_id is None or (identifies_nobody(source)
                                                                and identifies_nobody(event_id)):
        return shown
    return None if trace.trace_id(trace.derive(source, event_id)) == shown else shown


def lookup_name(value: object) -> str | None:
    """`value` (an id or code as a record holds it: text, or a whole number) as a lookup value, stripped as intake
    strips it; None unless it has the closed shape (`LOOKUP_PATTERN`) and identifies nobody."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 4 * MAX_LOOKUP_LENGTH:  # never strip a megabyte of spaces
        return None
    text = value.strip()
    return text if _LOOKUP.fullmatch(text) and identifies_nobody(text) else None


def lookup_id(value: object) -> str | None:
    """A `dlq.lookup.id` as a reader takes it: a lookup name, or an id of the shape intake derives for a portal
    payload. (Intake writes a producer's own id only as a `lookup_name`.)"""
    if isinstance(value, str) and _DERIVED_ID.fullmatch(value):
        return value
    return lookup_name(value)


def lookup_trace_id(value: object) -> str | None:
    """A 32-hex trace id as a lookup value; None for anything else."""
    return value if isinstance(value, str) and _TRACE_ID.fullmatch(value) else None
