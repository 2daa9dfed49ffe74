"""SMS encoding and segment counting (GSM 03.38 7-bit vs UCS-2), and the unaccented Vietnamese variant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from unidecode import unidecode

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
"""Each costs two septets (escape + char)."""
MAX_SEGMENTS = 6
"""Default cap of billed segments per SMS (`NOTIFY_SMS_MAX_SEGMENTS`): operators commonly allow 6-10 parts."""
MOST_SEGMENTS = 255
"""No SMS has more parts: a concatenated SMS gives its count of parts and each part's number one octet each (3GPP
TS 23.040)."""


@dataclass(frozen=True)
class SmsCount:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _sizes(text: str, gsm: bool) -> list[int]:
    """Each character's units: 2 for a GSM-7 escape pair or a UTF-16 surrogate pair (either stays whole), else 1."""
    if gsm:
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def _limits(gsm: bool) -> tuple[int, int]:
    """Units of a single-segment message, and of each segment of a longer one (its header takes the rest)."""
    return (160, 153) if gsm else (70, 67)


def excess(text: str, max_segments: int) -> int:
    """How many units `text` holds past what `max_segments` segments carry (0 when it fits; a pair never split
    across segments may cost a unit more, so callers check `count` again)."""
    single, multi = _limits(is_gsm7(text))
    return max(0, count(text).units - (single if max_segments == 1 else multi * max_segments))


def _pack(parts: int, used: int, size: int, multi: int) -> tuple[int, int]:
    """One more character in a concatenated SMS: it starts the next segment when it would straddle two."""
    return (parts + 1, size) if used + size > multi else (parts, used + size)


def count(text: str) -> SmsCount:
    """Segments as an operator bills them: 160/153 septets (GSM-7) or 70/67 UTF-16 units (UCS-2), a pair (escape
    and character, or a surrogate pair) never split across two segments: it moves whole to the next one."""
    gsm = is_gsm7(text)
    sizes = _sizes(text, gsm)
    single, multi = _limits(gsm)
    units, parts, used = sum(sizes), 1, 0
    if units > single:
        for size in sizes:
            parts, used = _pack(parts, used, size, multi)
    segments = 0 if units == 0 else 1 if units <= single else parts
    return SmsCount("GSM-7" if gsm else "UCS-2", units, segments)


def unaccented(text: str) -> str:
    """Vietnamese without diacritics ("Hồ sơ đã tiếp nhận" -> "Ho so da tiep nhan"), GSM-7 safe."""
    out = unidecode(text)
    return "".join(c if c in GSM7_BASIC or c in GSM7_EXTENSION else "'" if c == "`" else "?" for c in out)


def cut(text: str, max_segments: int) -> str:
    """`text`, or as much of it as `max_segments` billed segments hold followed by an ellipsis ("..." in GSM-7,
    which has no "…"), packed as `count` packs them (no pair split)."""
    if count(text).segments <= max_segments:
        return text
    gsm = is_gsm7(text)
    marker = "..." if gsm else "…"
    single, multi = _limits(gsm)
    parts, used, units, kept = 1, 0, 0, 0
    for size in _sizes(text, gsm):
        parts, used = _pack(parts, used, size, multi)
        units += size
        end_parts, end_used = parts, used
        for _ in marker:  # each unit 1 in its encoding
            end_parts, end_used = _pack(end_parts, end_used, 1, multi)
        if (1 if units + len(marker) <= single else end_parts) > max_segments:
            break
        kept += 1
    return text[:kept].rstrip() + marker


INVISIBLE: Final = "\u200b\u200c\u200d\u2060\ufeff"
"""Zero-width spaces and joiners, the word joiner and the byte-order mark: nothing to see, but none is GSM-7."""
LOOK_ALIKES: Final = {"\u2026": "...", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                      "\u2014": "-", "\u00a0": " "}
"""Typographic characters (an ellipsis, curly quotes, dashes, a no-break space: a list cut short, text pasted from a
word processor) and the GSM-7 characters that read the same."""
_TO_GSM7: Final = str.maketrans({**dict.fromkeys(INVISIBLE, ""), **LOOK_ALIKES})


def fit(text: str, segment_limit: int, allow_unaccented: bool,
        max_segments: int = MAX_SEGMENTS) -> tuple[str, SmsCount]:
    """The text to send: the accented one if within `segment_limit`, else the unaccented variant when allowed;
    either cut to `max_segments` (every segment is billed: a message is never allowed to grow without bound). A text
    that is GSM-7 but for invisible characters (`INVISIBLE`: a zero-width space in a procedure name, a byte-order
    mark ending a dossier code copied from a CSV) goes without them, and with `LOOK_ALIKES` in GSM-7: one made an
    English SMS UCS-2, twice the segments (notify audit). Khmer, never GSM-7, keeps its zero-width spaces."""
    chosen = cut(as_sent(text, segment_limit, allow_unaccented), max_segments)
    return chosen, count(chosen)


def as_sent(text: str, segment_limit: int, allow_unaccented: bool) -> str:
    """`fit`'s text before its cut: without invisible characters and with look-alikes in GSM-7 if that makes it
    GSM-7, unaccented if allowed and past `segment_limit`."""
    if not is_gsm7(text) and is_gsm7(plain := text.translate(_TO_GSM7)):
        text = plain
    return unaccented(text) if allow_unaccented and count(text).segments > segment_limit else text
