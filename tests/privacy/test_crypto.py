"""The primitives: AES-256-GCM seal/open round trips, tampering, key wrapping and subject ids (property-based)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from services.privacy import crypto
from services.privacy.crypto import Tampered

pytestmark = pytest.mark.unit

keys = st.binary(min_size=32, max_size=32)
texts = st.binary(max_size=512)
aads = st.binary(max_size=64)


@given(key=keys, plaintext=texts, aad=aads)
@settings(deadline=None)
def test_open_returns_what_was_sealed(key: bytes, plaintext: bytes, aad: bytes) -> None:
    """Any bytes sealed under any key and associated data open to the same bytes."""
    assert crypto.open_sealed(key, crypto.seal(key, plaintext, aad), aad) == plaintext


@given(key=keys, plaintext=texts, aad=aads, data=st.data())
@settings(deadline=None, max_examples=300)
def test_any_changed_byte_fails(key: bytes, plaintext: bytes, aad: bytes, data: st.DataObject) -> None:
    """Flipping any bit of any byte of a sealed value (nonce, ciphertext or tag) makes it refuse to open."""
    sealed = bytearray(crypto.seal_raw(key, plaintext, aad))
    index = data.draw(st.integers(0, len(sealed) - 1), label="byte")
    sealed[index] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(Tampered):
        crypto.open_raw(key, bytes(sealed), aad)


@given(key=keys, other=keys, plaintext=texts, aad=aads, other_aad=aads)
@settings(deadline=None)
def test_wrong_key_or_associated_data_fails(key: bytes, other: bytes, plaintext: bytes, aad: bytes,
                                            other_aad: bytes) -> None:
    """A value opens only with its own key and its own associated data (event id and field)."""
    token = crypto.seal(key, plaintext, aad)
    if other != key:
        with pytest.raises(Tampered):
            crypto.open_sealed(other, token, aad)
    if other_aad != aad:
        with pytest.raises(Tampered):
            crypto.open_sealed(key, token, other_aad)


@given(token=st.text(max_size=80))
@settings(deadline=None)
def test_garbage_tokens_are_tampered_never_another_error(token: str) -> None:
    """Whatever text arrives as a token, opening it fails with `Tampered` (never a crash of another kind)."""
    with pytest.raises(Tampered):
        crypto.open_sealed(bytes(32), token, b"aad")


@given(truncate=st.integers(0, 27))
@settings(deadline=None)
def test_truncated_values_fail(truncate: int) -> None:
    """A sealed value cut short (even below nonce + tag) refuses to open."""
    sealed = crypto.seal_raw(bytes(32), b"0912345678", b"aad")
    with pytest.raises(Tampered):
        crypto.open_raw(bytes(32), sealed[:truncate], b"aad")


def test_nonces_are_fresh() -> None:
    """Sealing the same value twice gives different tokens (random 96-bit nonce each time)."""
    assert crypto.seal(bytes(32), b"same", b"aad") != crypto.seal(bytes(32), b"same", b"aad")


@given(key=keys, items=st.lists(st.tuples(texts, aads), max_size=8))
@settings(deadline=None)
def test_seal_many_opens_each_with_its_own_associated_data(key: bytes, items: list[tuple[bytes, bytes]]) -> None:
    """`seal_many` (an applicant's fields at once) gives tokens `open_sealed` opens, each only with its own aad, each
    under a nonce of its own."""
    tokens = crypto.seal_many(AESGCM(key), items)
    assert [crypto.open_sealed(key, token, aad) for token, (_, aad) in zip(tokens, items, strict=True)] == [
        plaintext for plaintext, _ in items]
    nonces = [crypto.unb64(token)[:crypto.NONCE_BYTES] for token in tokens]
    assert len(set(nonces)) == len(nonces)
    for token, (_, aad) in zip(tokens, items, strict=True):
        with pytest.raises(Tampered):
            crypto.open_sealed(key, token, aad + b"x")


@given(data=st.binary(max_size=100))
def test_b64_is_unpadded_base64url(data: bytes) -> None:
    assert crypto.b64(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    assert crypto.unb64(crypto.b64(data)) == data


@given(dek=keys, subject=st.text(min_size=1, max_size=20), key_id=st.text(min_size=1, max_size=20))
@settings(deadline=None)
def test_wrapped_keys_unwrap_only_for_their_subject_and_id(dek: bytes, subject: str, key_id: str) -> None:
    """A wrapped data key unwraps under its KEK, subject and key id, and fails if either is swapped."""
    kek = bytes(range(32))
    wrapped = crypto.wrap(kek, dek, subject, key_id)
    assert crypto.unwrap(kek, wrapped, subject, key_id) == dek
    with pytest.raises(Tampered):
        crypto.unwrap(kek, wrapped, subject + "x", key_id)
    with pytest.raises(Tampered):
        crypto.unwrap(kek, wrapped, subject, key_id + "x")


@given(digits=st.text(alphabet="0123456789", min_size=12, max_size=12))
@settings(deadline=None)
def test_subject_ids_reveal_no_digits_and_ignore_formatting(digits: str) -> None:
    """A CCCD's subject id is the same however it is spaced, depends on the pepper, and does not contain it."""
    spaced = f"{digits[:3]} {digits[3:6]}.{digits[6:9]}-{digits[9:]}"
    subject = crypto.cccd_subject(b"pepper-0123456789", digits)
    assert subject == crypto.cccd_subject(b"pepper-0123456789", spaced)
    assert subject != crypto.cccd_subject(b"another-pepper-01", digits)
    assert digits not in subject and digits[:6] not in subject


@given(digits=st.text(alphabet="0123456789", min_size=12, max_size=12),
       written=st.sampled_from(["CCCD {}", "CCCD: {}", "{}/CA", "Số CCCD {} ", "{}\u200b", "\ufeff{}", "{full}",
                                "CMND/CCCD {}"]))
@settings(deadline=None)
def test_a_cccd_written_with_a_label_or_in_full_width_has_the_subject_of_its_digits(digits: str, written: str) -> None:
    """As intake meets them in forms: a label or an issuer around the one number, a zero-width character pasted in,
    full-width digits. Each names the subject of its 12 digits, so an erasure by the number reaches it (before: none
    identified a person, the applicant was sealed under a random subject no erasure could name; privacy audit F4)."""
    if len(set(digits)) == 1:
        return  # one repeated digit names nobody
    full = "".join(chr(ord(d) + 0xFEE0) for d in digits)
    text = written.format(digits, full=full)
    assert crypto.identifies("cccd", text)
    assert crypto.cccd_subject(b"pepper-0123456789", text) == crypto.cccd_subject(b"pepper-0123456789", digits)


@pytest.mark.parametrize("text", ["12 001099012345", "001099012345 / 079203004567", "CCCD", "0010990123",
                                  "A123456789", "123456789A", "X001099012345", "001099012345/12",
                                  "\u0660\u0660\u0661\u0660\u0669\u0669\u0660\u0661\u0662\u0663\u0664\u0665"])
def test_a_cccd_field_without_exactly_one_number_of_9_or_12_digits_identifies_nobody(text: str) -> None:
    """Two numbers, a number of another length, none, digits of another script, or a letter touching the number (a
    Taiwanese id `A123456789` is not the CMND `123456789`; review M3): no guess is made."""
    assert not crypto.identifies("cccd", text)


def test_a_phone_in_full_width_digits_has_the_subject_of_its_digits() -> None:
    """And the subject its copies were sealed under before, when its digits were kept as written, is erased with it
    (review L1: no spelling reached those any more)."""
    full = "".join(chr(ord(d) + 0xFEE0) for d in "0912345678")
    assert crypto.normalise_phone(full) == crypto.normalise_phone("09\u200b12 345 678") == "0912345678"
    pepper = b"pepper-0123456789"
    assert crypto.subject_id(pepper, "phone", full) in crypto.legacy_phone_subjects(pepper, full)
    assert crypto.subject_id(pepper, "phone", full) not in crypto.legacy_phone_subjects(pepper, "0912345678")


def test_a_subject_names_itself_and_only_an_applicants() -> None:
    """`erase --subject`: an applicant's subject as intake makes one (a- HMAC, r- random) is its own subject; a day
    key's `dlq:<day>`, or anything else, identifies nobody."""
    from services.privacy.keyring import Keyring

    for subject in (Keyring.anonymous_subject(), crypto.cccd_subject(b"pepper-0123456789", "001099012345")):
        assert crypto.identifies("subject", subject)
        assert crypto.identifier_subject(b"pepper-0123456789", "subject", subject) == subject
    for other in ("dlq:2026-12-03", "a-short", "r-" + "A" * 23, "001099012345", ""):
        assert not crypto.identifies("subject", other)
