"""Free text as canonical events carry it, and the key a name is looked up by.

Vietnamese can be typed two ways that look the same: precomposed ("ễ", one code point, Unicode's NFC, what most
software writes) and decomposed ("e" + circumflex + tilde, NFD: "Unicode tổ hợp" in Vietnamese keyboard tools, and
macOS file names). Compared as strings they differ, so one commune's "Thôn Bản Mới" was another's unknown village.
Canonical events carry their free text in NFC (`Text`): validation normalises it, before its length is checked.
Names matched against configuration (a village in notify's directory) are compared by `name_key`, which also
ignores case and runs of spaces.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import BeforeValidator


def nfc(value: str) -> str:
    """`value` in Unicode normalisation form C (itself when it already is: the usual case, checked in C)."""
    return value if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value)


def _nfc_input(value: object) -> object:
    return nfc(value) if isinstance(value, str) else value  # anything else fails as pydantic says


NFC = BeforeValidator(_nfc_input)
"""Normalises a free-text field (a procedure name, a title, a village) to NFC before its bounds are checked."""
Text = Annotated[str, NFC]
"""A required free-text field; its `Field` gives the bounds. An optional one puts them inside, before `NFC`:
`Annotated[str, Field(max_length=n), NFC] | None`. Bounds on the outer `Field` of an optional field are checked
as a generic length after the validator (pydantic's `too_long`, which intake reads as a list too long)."""


def name_key(name: str) -> str:
    """What two spellings of one name share ("thôn  BẢN Mới" is "thôn bản mới"): Unicode's canonical caseless match
    (NFD, case folded, NFD again; given in NFC), with runs of spaces as one and none at either end."""
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())
    return " ".join(unicodedata.normalize("NFC", folded).split())
