"""SMS encoding and segment counting (GSM 03.38 7-bit vs UCS-2), and the unaccented Vietnamese variant."""

from __future__ import annotations

from dataclasses import dataclass

from unidecode import unidecode

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
"""Each costs two septets (escape + char)."""
MAX_SEGMENTS = 6
"""Default cap of billed segments per SMS (`NOTIFY_SMS_MAX_SEGMENTS`): operators commonly allow 6-10 parts."""


@dataclass(frozen=True)
class SmsCount:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def count(text: str) -> SmsCount:
    """Segments as an operator bills them: 160/153 septets (GSM-7) or 70/67 UTF-16 units (UCS-2)."""
    if is_gsm7(text):
        units = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 0 if units == 0 else 1 if units <= single else -(-units // multi)
    return SmsCount(encoding, units, segments)


def unaccented(text: str) -> str:
    """Vietnamese without diacritics ("Hồ sơ đã tiếp nhận" -> "Ho so da tiep nhan"), GSM-7 safe."""
    out = unidecode(text)
    return "".join(c if c in GSM7_BASIC or c in GSM7_EXTENSION else "'" if c == "`" else "?" for c in out)


def cut(text: str, max_segments: int) -> str:
    """`text`, or as much of it as `max_segments` billed segments hold followed by an ellipsis ("..." in GSM-7,
    which has no "…")."""
    if count(text).segments <= max_segments:
        return text
    gsm = is_gsm7(text)
    single, multi, marker = (160, 153, "...") if gsm else (70, 67, "…")
    budget = (single if max_segments == 1 else multi * max_segments) - len(marker)
    used = kept = 0
    for c in text:
        used += (2 if c in GSM7_EXTENSION else 1) if gsm else (2 if ord(c) > 0xFFFF else 1)
        if used > budget:
            break
        kept += 1
    return text[:kept].rstrip() + marker


def fit(text: str, segment_limit: int, allow_unaccented: bool,
        max_segments: int = MAX_SEGMENTS) -> tuple[str, SmsCount]:
    """The text to send: the accented one if within `segment_limit`, else the unaccented variant when allowed;
    either cut to `max_segments` (every segment is billed: a message is never allowed to grow without bound)."""
    chosen = text
    if count(text).segments > segment_limit and allow_unaccented:
        chosen = unaccented(text)
    chosen = cut(chosen, max_segments)
    return chosen, count(chosen)
