"""The cryptographic primitives of personal data, pure: AES-256-GCM sealing, key wrapping, subject ids.

Everything here is the maintained `cryptography` package's AESGCM and HMAC; nothing is
home-made. A sealed token is base64url(12-byte random nonce || ciphertext || 16-byte tag),
bound to its associated data (the event id and field name, or subject/key id for a
wrapped key): a token opened with other associated data, or with any byte changed, fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import unicodedata
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.logging import SafeMessage

KEY_BYTES = 32
"""AES-256: data keys and the key-encryption key."""
NONCE_BYTES = 12
"""96-bit random nonces (NIST SP 800-38D); a data key seals far fewer than 2^32 values."""
TAG_BYTES = 16


class PrivacyError(SafeMessage):
    """Base of this package's errors; messages never carry personal data or key material, so they are logged."""


class Erased(PrivacyError):
    """The data key is gone (erased, or a dead-letter day key past its retention): the value is unreadable."""


class Tampered(PrivacyError):
    """The token is malformed, or its tag does not verify (changed bytes, wrong key or wrong associated data)."""


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64(data: bytes) -> str:
    """base64url without padding (what `base64.urlsafe_b64encode` gives, stripped; binascii directly: hot path)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Tampered("not base64url") from None


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def new_key_id() -> str:
    """128 random bits: two workers creating a key for one subject at once never collide."""
    return b64(os.urandom(16))


Key = bytes | AESGCM
"""A 32-byte key, or its AESGCM object (a keyring keeps one per data key: building it costs as much as a seal)."""


def cipher(key: Key) -> AESGCM:
    return key if isinstance(key, AESGCM) else AESGCM(key)


def seal_raw(key: Key, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM under `key`, fresh random nonce: nonce || ciphertext || tag (`aad` authenticated, not stored)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + cipher(key).encrypt(nonce, plaintext, aad)


def open_raw(key: Key, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of `sealed`; `Tampered` unless key, associated data and every byte are right."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise Tampered("sealed value too short")
    try:
        return cipher(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise Tampered("authentication failed") from None


def seal(key: Key, plaintext: bytes, aad: bytes) -> str:
    """`seal_raw` as base64url text (a JSON field)."""
    return b64(seal_raw(key, plaintext, aad))


def seal_many(key: Key, items: list[tuple[bytes, bytes]]) -> list[str]:
    """`seal` of each (plaintext, aad) under one key, as base64url text: the nonces are drawn in one call (the
    same fresh random bytes, NONCE_BYTES each), the rest inlined (an applicant's fields are sealed per event)."""
    nonces = os.urandom(NONCE_BYTES * len(items))
    encrypt, tokens = cipher(key).encrypt, []
    for i, (plaintext, aad) in enumerate(items):
        nonce = nonces[i * NONCE_BYTES:(i + 1) * NONCE_BYTES]
        tokens.append(b64(nonce + encrypt(nonce, plaintext, aad)))
    return tokens


def open_sealed(key: Key, token: str, aad: bytes) -> bytes:
    return open_raw(key, unb64(token), aad)


def wrap_aad(subject: str, key_id: str) -> bytes:
    return f"commune-bus/dek/{subject}/{key_id}".encode()


def wrap(kek: Key, dek: bytes, subject: str, key_id: str) -> str:
    """The data key sealed under the key-encryption key, bound to its subject and key id."""
    return seal(kek, dek, wrap_aad(subject, key_id))


def unwrap(kek: Key, wrapped: str, subject: str, key_id: str) -> bytes:
    dek = open_sealed(kek, wrapped, wrap_aad(subject, key_id))
    if len(dek) != KEY_BYTES:
        raise Tampered("wrapped key has the wrong length")
    return dek


_SEPARATORS = re.compile(r"[\s.\-]")
_LABELLED = re.compile(
    r"\s*(?:(?:s[ốo]\s*)?(?:cccd|cmnd|cmt|c[ăa]n\s*c[ưu][ớo]c(?:\s*c[ôo]ng\s*d[âa]n)?)(?:\s*/\s*(?:cccd|cmnd|cmt))?"
    r"(?:\s*s[ốo])?\s*[:.#-]?\s*)?(?P<number>[0-9](?:[\s.\-]*[0-9])*)\s*(?:/\s*[^\W\d][^\d]*)?", re.IGNORECASE)
"""A number with a label of the identity card's before it (`CCCD`, `CMND`, `Số CCCD:`, `Căn cước công dân số`) and
an issuer after a slash (`/CA`, `/CA Tuyên Quang`), or neither. A letter that touches the number is no label: a
Taiwanese id `A123456789` is not the CMND `123456789` (it identifies nobody)."""


def _plain(text: str) -> str:
    """`text` with full-width and other compatibility forms as their plain characters (NFKC: `０９１` is `091`) and
    without invisible format characters (a zero-width space pasted in from a form)."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")


def normalise_cccd(number: str) -> str:
    """The CCCD as 12 digits (9 for an old CMND), however written: spaces, dots and dashes removed, full-width digits
    and invisible characters as `_plain` takes them, and the card's label before it or its issuer after a slash left
    out (`CCCD: 001099012345`, `001099012345/CA`; `_LABELLED`). Other text keeps what is left without separators, and
    identifies nobody (`identifies`) unless it is digits only."""
    plain = _plain(number)
    bare = _SEPARATORS.sub("", plain)
    if bare.isdigit():
        return bare
    labelled = _LABELLED.fullmatch(plain)
    return _SEPARATORS.sub("", labelled["number"]) if labelled else bare


_COUNTRY_CODES = ("+84", "0084")


def normalise_phone(phone: str) -> str:
    """A Vietnamese number in its domestic form, however written: `+84 912 345 678`, `+84 (0)912 345 678`,
    `0084912345678` and `84912345678` are all `0912345678` (an erasure by one form must reach every copy); any other
    text keeps its digits (and a leading +). No domestic number starts with 8, so 11 or 12 digits starting with 84
    (a mobile's 9 or a landline's 10 after the country code) are the country code written without its +."""
    digits = re.sub(r"[^0-9+]", "", _plain(phone))
    for prefix in _COUNTRY_CODES:
        if digits.startswith(prefix):
            return "0" + digits[len(prefix):].lstrip("0")
    if digits.startswith("84") and len(digits) in (11, 12):
        return "0" + digits[2:].lstrip("0")
    return digits


def legacy_phone_subjects(pepper: Pepper, phone: str) -> list[str]:
    """The subjects a phone's copies may have been sealed under before 2026-12-02, when `84...`, `0084...` and
    `+84 0...` were each a subject of their own (the domestic form of the number was not taken): an erasure by the
    phone erases those too."""
    domestic = normalise_phone(phone)
    if not (domestic.startswith("0") and domestic[1:].isdigit()):
        return []
    rest = domestic[1:]
    # and before 2026-12-03 a phone written in full-width (or other Unicode) digits kept them: a subject of its own
    unicode_form = [] if phone.isascii() else [subject_id(pepper, "phone", re.sub(r"[^\d+]", "", phone))]
    return [subject_id(pepper, "phone", old) for old in (f"84{rest}", f"0084{rest}", f"00{rest}")] + unicode_form


Pepper = bytes | hmac.HMAC
"""The pepper, or an HMAC already keyed with it (copied per use: keying costs as much as the MAC)."""


def _mac(pepper: Pepper, text: str) -> str:
    mac = pepper.copy() if isinstance(pepper, hmac.HMAC) else hmac.new(pepper, digestmod=hashlib.sha256)
    mac.update(text.encode())
    return b64(mac.digest())


def subject_id(pepper: Pepper, kind: str, value: str) -> str:
    """`a-` + base64url(HMAC-SHA256(pepper, kind:value)): stable per person, reveals nothing without the pepper."""
    return "a-" + _mac(pepper, f"{kind}:{value}")


DOSSIER_SEPARATOR = "\x1f"
"""Between a dossier's source and code: a control character, which no identifier may hold (as intake's `dedup`)."""


def dossier_subject(pepper: Pepper, source: str, dossier_code: str) -> str:
    """`d-` + base64url(HMAC-SHA256(pepper, dossier:source␟code)): the subject of an applicant who gave no identifier
    that names one person, one per dossier (its code numbered by its source, as intake tells events apart by source
    and id). Every event of the dossier shares its key; no two dossiers share one; the pepper hides which dossier."""
    return "d-" + _mac(pepper, f"dossier:{source}{DOSSIER_SEPARATOR}{dossier_code}")


def keyed_pepper(pepper: bytes) -> hmac.HMAC:
    return hmac.new(pepper, digestmod=hashlib.sha256)


def cccd_subject(pepper: Pepper, cccd: str) -> str:
    return subject_id(pepper, "cccd", normalise_cccd(cccd))


MIN_PHONE_DIGITS = 8
"""Fewer digits than this is no phone number (Vietnamese numbers have 10; "-", "N/A", "không có" have none)."""

PLACEHOLDERS: Final = frozenset({"n/a", "na", "n.a.", "none", "null", "nil", "undefined", "unknown", "không",
                                 "không có", "khong", "khong co", "chưa có", "chua co", "trống", "trong"})
"""What forms put in an empty identifier field (lower case): no Zalo id."""


def _one_repeated(chars: str) -> bool:
    """"000000000000", "0000000000", "xxx": what a form's filler looks like, never one person's number or id."""
    return len(set(chars)) <= 1


def identifies(kind: str, value: str) -> bool:
    """Whether `value`, normalised as its subject would be, can name one person: a phone with digits enough, an
    e-mail with an @ between two parts, a CCCD (or CMND) of digits, a Zalo id with a letter or digit that is no
    known placeholder (`PLACEHOLDERS`); a CCCD, phone or Zalo id of one repeated character names nobody. Intake
    seals under the first identifier that does (`applicant.subject_of`); an erasure refuses one that does not,
    which would shred everyone whose dossier carried the same placeholder (ADR 0015)."""
    if kind == "cccd":
        number = normalise_cccd(value)
        return number.isascii() and number.isdigit() and len(number) in (9, 12) and not _one_repeated(number)
    if kind == "subject":
        return APPLICANT_SUBJECT.fullmatch(value) is not None
    if kind == "phone":
        digits = [c for c in normalise_phone(value) if c.isdigit()]
        return len(digits) >= MIN_PHONE_DIGITS and not _one_repeated("".join(digits))
    text = value.strip().lower()
    if kind == "email":
        local, at, domain = text.partition("@")
        return bool(at and local and domain)
    return (any(c.isalnum() for c in text) and text not in PLACEHOLDERS
            and not _one_repeated("".join(c for c in text if c.isalnum())))


APPLICANT_SUBJECT = re.compile(r"a-[A-Za-z0-9_-]{43}|d-[A-Za-z0-9_-]{43}|r-[A-Za-z0-9_-]{22}")
"""An applicant's subject as intake makes one: `subject_id` (`a-`, an identifier's HMAC) or, for an applicant sealed
without any identifier that names one person, `dossier_subject` (`d-`, the dossier's HMAC; before 2026-12-03 a random
`r-` per event, `Keyring.anonymous_subject`, still in old data). Never a day key's `dlq:<day>`."""


def identifier_subject(pepper: Pepper, kind: str, value: str) -> str:
    """The subject of an applicant known by `kind` (`cccd`, `phone`, `email`, `zalo`), each normalised first, or
    named by it (`subject`: as `trace` shows it on a canonical event)."""
    if kind == "subject":
        return value
    if kind == "cccd":
        return cccd_subject(pepper, value)
    if kind == "phone":
        value = normalise_phone(value)
    return subject_id(pepper, kind, value.strip().lower())


PLACEHOLDER_VALUES: Final = (*sorted(PLACEHOLDERS), "", "-", "--", "---", ".", "x", "xx", "xxx", "0",
                              *(digit * n for digit in "0123456789" for n in (8, 9, 10, 11, 12)))
"""What forms put in an empty identifier field, as values of any kind: before 2026-12-02 each was sealed under as a
subject of its own, shared by every applicant who gave it (`placeholder_subjects`)."""


def placeholder_subjects(pepper: Pepper) -> frozenset[str]:
    """The subjects of `PLACEHOLDER_VALUES` as each kind of identifier: an erasure by subject refuses them (one would
    shred every stranger sealed under the same placeholder; review M4)."""
    return frozenset(identifier_subject(pepper, kind, value) for kind in ("cccd", "phone", "email", "zalo")
                     for value in PLACEHOLDER_VALUES)
