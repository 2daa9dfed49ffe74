"""Fuzzing the key store's record handling: whatever the key topics hold, no record stops a key store.

Every service that seals or opens personal data (intake, notify, the gateway, `commune-bus dlq`) reads both key
topics at start and follows them (`services.privacy.store.KeyStore`); a record that raised out of it stopped the
service, and the compacted topic gave it back at every restart (audit 2026-12-04: an expiry out of bounds). Records
here are any bytes, and real key records and erasure marks with members replaced by hostile values, under their own
record key or another; applied in memory, on disk and to a kept store reopened after them.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord, record_key
from services.common.settings import KafkaConnection
from services.privacy import crypto
from services.privacy.crypto import PrivacyError
from services.privacy.disk import DiskKeys
from services.privacy.disk_folder import Kept
from services.privacy.key_records import encoded
from services.privacy.keyring import Keyring
from services.privacy.store import UNREADABLE_NOW, KeyStore, key_topics
from tests.fuzz.strategies import EXAMPLES, HOSTILE_DATES, fuzz_settings, mutated
from tests.privacy.keys import KEK, NOW, PEPPER

pytestmark = pytest.mark.unit
TOPICS = key_topics("ns")
SUBJECTS = ["a-one", "dlq:2026-12-01", "d-two"]
KEY_IDS = ["k-1", "k-2"]


def _key_record(subject: str, key_id: str, expires: bool) -> dict[str, Any]:
    record = KeyRecord(subject=subject, key_id=key_id, kek_id="kek-1", created_at=NOW,
                       wrapped=crypto.wrap(KEK, bytes(range(32)), subject, key_id),
                       expires_at=NOW + timedelta(days=1) if expires else None)
    return orjson.loads(encoded(record))


BASES: list[tuple[Any, dict[str, Any]]] = [
    *(((s, k), _key_record(s, k, expires)) for s in SUBJECTS for k in KEY_IDS for expires in (False, True)),
    *(((s, ERASED_MARK), ErasureMark(subject=s, created_up_to=NOW).model_dump(mode="json")) for s in SUBJECTS),
]
"""Readable records of every kind, each with the record key it belongs under."""

KEYS = st.one_of(
    st.sampled_from([record_key(s, k) for s in SUBJECTS for k in [*KEY_IDS, ERASED_MARK]]),
    st.binary(max_size=40), st.none(), st.just(b"/"), st.just("ä/\udcff".encode("utf-8", "surrogatepass")))


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes | None, bytes | None]:
    """(record key, value): a readable record, one mutated, any bytes, or a tombstone; mostly under its own key."""
    kind = draw(st.sampled_from(["readable", "mutated", "mutated", "mutated", "dates", "bytes", "tombstone"]))
    (subject, key_id), base = draw(st.sampled_from(BASES))
    if kind == "mutated":
        _, base = draw(mutated([((subject, key_id), base)]))
    elif kind == "dates":  # one time, any text a date may be (a permanent key given an expiry too)
        field = "created_up_to" if key_id == ERASED_MARK else draw(st.sampled_from(["created_at", "expires_at"]))
        base = {**base, field: draw(HOSTILE_DATES)}
    key = record_key(subject, key_id) if draw(st.integers(0, 4)) else draw(KEYS)
    if kind == "tombstone":
        return key, None
    if kind == "bytes":
        return key, draw(st.binary(max_size=300))
    return key, orjson.dumps(base)


def _consumed(batch: list[tuple[bytes | None, bytes | None]], topic: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(TOPICS[topic], 0, offset, 0, 0, key, value, None, len(key or b""), len(value or b""), [])
            for offset, (key, value) in enumerate(batch)]


async def _read(keyring: Keyring, stream: list[tuple[tuple[bytes | None, bytes | None], int]]) -> None:
    """The stream through a key store's record handling (`apply_all`, as its fetches call it), one record a batch."""
    store = KeyStore(KafkaConnection(bootstrap="127.0.0.1:1"), "ns", keyring, client_id="fuzz-keys")
    try:
        for (key, value), topic in stream:
            store.apply_all(_consumed([(key, value)], topic))
            assert UNREADABLE_NOW._value.get() == keyring.unreadable_keys()
    finally:
        await store.stop()


def _exercise(keyring: Keyring, clock: list[datetime]) -> list[Any]:
    """What a service asks of its keyring after reading the topics, every answer (any other exception fails)."""
    answers: list[Any] = [len(keyring), keyring.unreadable_keys()]
    for days in (0, 2, 400):
        clock[0] = NOW + timedelta(days=days)
        answers.append(keyring.expire())
        for subject in SUBJECTS:
            answers.append(keyring.key_ids(subject))
            for key_id in KEY_IDS:
                try:
                    keyring.dek(subject, key_id)
                    answers.append("opens")
                except PrivacyError as exc:
                    answers.append(type(exc).__name__)
    clock[0] = NOW
    for subject in SUBJECTS:
        keyring.key_for(subject, NOW + timedelta(days=1))
        keyring.key_for(subject)
    return answers


@fuzz_settings(150)
@given(stream=st.lists(st.tuples(records(), st.integers(0, 1)), max_size=12))
def test_no_key_topic_record_raises_out_of_the_key_store(stream: list[tuple[tuple[bytes | None, bytes | None],
                                                                        int]]) -> None:
    """Any records on either key topic: the key store applies or skips each (counted, its key held unreadable: the
    gauge behind KeyRecordsUnreadable says how many), never raises; the keyring then answers every question, in
    memory as on disk, and a kept store reopened after them starts (audit: an expiry out of bounds stopped every
    service holding a keyring, at every restart)."""
    EXAMPLES["key store"] += 1
    answers = []
    with tempfile.TemporaryDirectory() as folder:
        kept = Kept.of("ns-fuzz", {"kek-1": KEK}, "kek-1")
        for table in (None, DiskKeys(Path(folder), cached=1), DiskKeys(Path(folder), cached=1, kept=kept)):
            clock = [NOW]
            keyring = Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda c=clock: c[0], table=table)
            try:
                asyncio.run(_read(keyring, stream))
                keyring.checkpoint({(TOPICS[0], 0): len(stream)})
                answers.append(_exercise(keyring, clock))
            finally:
                keyring.close()
        reopened = Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: NOW,
                           table=DiskKeys(Path(folder), cached=1, kept=kept))
        try:
            _exercise(reopened, [NOW])
        finally:
            reopened.close()
    assert answers[0] == answers[1] == answers[2], "in memory and on disk, the same answers"


def test_the_fuzzed_records_reach_every_branch() -> None:
    """The strategy's records before mutation are readable (keys held, then erased by their subjects' marks), so the
    fuzz test does not exercise the parser's refusals alone."""
    keyring = Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: NOW)
    marks = [(record_key(*key), orjson.dumps(base)) for key, base in BASES if key[1] == ERASED_MARK]
    for key, base in BASES:
        if key[1] != ERASED_MARK:
            keyring.apply(record_key(*key), orjson.dumps(base))
    assert len(keyring) == len(SUBJECTS) * len(KEY_IDS)
    for key, value in marks:
        keyring.apply(key, value)
    assert len(keyring) == 0
