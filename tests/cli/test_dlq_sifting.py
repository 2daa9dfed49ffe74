"""`dlq list` / `dlq replay` sift the DLQ as they read it: only the matching dead letters are held (30 days of a flood
of junk was held whole before the filters), and a letter sealed under a key written after the key store was read is
opened once the keys are read again, not counted erased."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.deadletter import DeadLetterContext, Reason
from services.cli import dlq, dlq_commands, replaying
from services.cli.deadletters import Filters
from services.cli.main import app
from services.common.settings import KafkaConnection
from services.privacy import deadletters
from services.privacy.keyring import Keyring
from services.privacy.store import key_messages
from tests.keys_env import PRIVACY_ENV
from tests.privacy.keys import keyring

pytestmark = pytest.mark.unit
RAW = "commune.raw.dossier"


def context(reason: Reason, offset: int, at: str = "2026-12-01T01:00:00+00:00") -> list[tuple[str, bytes | None]]:
    return list(DeadLetterContext(reason=reason, field="f", message="m", source_topic=RAW, source_partition=0,
                                  source_offset=offset, rejected_at=at).headers())


def test_only_the_matching_dead_letters_are_held() -> None:
    """300 dead letters of another reason and one unreadable record are counted or dropped as they pass; the one
    that matches is all that is held."""
    sifter = dlq.Sifter(Filters(reasons=frozenset({Reason.NOT_JSON})), None)
    for offset in range(300):
        sifter.sift((0, offset, None, b"x" * 1000, context(Reason.MISSING_FIELD, offset)))
    sifter.sift((0, 300, None, b"{", context(Reason.NOT_JSON, 300)))
    sifter.sift((0, 301, None, b"{}", []))  # no dlq.* headers
    assert [d.position for d in sifter.letters] == ["0:300"]
    assert (sifter.unreadable, sifter.erased, sifter.unknown) == (1, 0, [])


def test_a_letter_sealed_under_a_key_written_after_the_keys_were_read_is_listed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake writes a sealed dead letter's key in the same transaction as the letter: one written between the
    reading of the keys and that of the DLQ is opened once the keys are read again (it would be counted erased)."""
    writer = keyring()
    sealed = deadletters.seal_dead_letter(writer, b"02269", b'{"not": "a dossier"}', [("commune-code", b"02269")],
                                          source_topic=RAW, partition=0, offset=5, rejected_on=date(2026, 12, 1),
                                          retention_days=30)
    now = datetime.now(UTC).isoformat()
    stored = (1, 9, sealed.key, sealed.value, [*sealed.headers, *context(Reason.MISSING_FIELD, 5, now)])
    reads: list[Keyring] = []

    async def keys_as_read(*_: Any) -> Keyring:  # empty at first: the letter's key came after
        ring = keyring()
        if reads:
            for _, key, value in key_messages(list(sealed.keys), ""):
                ring.apply(key, value)
        reads.append(ring)
        return ring

    async def read_into(_conn: Any, _topic: str, apply: Callable[[dlq.Stored], None], _since: Any = None) -> None:
        apply(stored)

    async def replayed_keys(*_: Any) -> set[bytes]:
        return set()

    for name, value in PRIVACY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(dlq, "_keyring", keys_as_read)
    monkeypatch.setattr(dlq, "read_into", read_into)
    monkeypatch.setattr(dlq, "replayed_keys", replayed_keys)
    listing = asyncio.run(dlq.dead_letters(KafkaConnection(), "", Filters()))
    assert len(reads) == 2
    assert [(d.position, d.value, d.context.reason) for d in listing.letters] == \
        [("1:9", b'{"not": "a dossier"}', Reason.MISSING_FIELD)]
    assert (listing.unreadable, listing.erased) == (0, 0)


def test_a_letter_whose_key_is_gone_is_erased_at_once_not_held() -> None:
    """A letter rejected long before the keys were read, under a key they do not hold (a day key past its
    retention): its key would have been among them, so it is erased, counted, not held for a second read of the
    keys (review: a day of a flood of junk was held whole again, whatever the filters)."""
    writer = keyring()
    sealed = deadletters.seal_dead_letter(writer, None, b"junk", [], source_topic=RAW, partition=0, offset=1,
                                          rejected_on=date(2026, 11, 1), retention_days=30)
    read_at = datetime(2026, 12, 3, tzinfo=UTC)
    sifter = dlq.Sifter(Filters(), keyring(), read_at)
    for offset, at in enumerate([read_at - timedelta(days=2), read_at - timedelta(minutes=5)]):
        sifter.sift((0, offset, sealed.key, sealed.value, [*sealed.headers, *context(Reason.NOT_JSON, 1,
                                                                                     at.isoformat())]))
    assert (sifter.erased, [s[1] for s in sifter.unknown]) == (1, [1])  # only the recent one may be late


def test_a_letter_of_an_applicant_erased_while_the_dlq_was_read_is_not_replayed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`dlq replay` reads the keys, then the whole DLQ (minutes for a large one), then writes: an applicant erased in
    between had their dead letter re-driven in clear to the raw topic, and intake sealed it again under a new key, the
    erased data readable again (erasure audit). The keys are asked again just before the writes: it is counted
    erased, and nothing is replayed."""
    writer = keyring()
    value = b'{"data": {"applicant": {"id_number": "001099012345"}}}'
    sealed = deadletters.seal_dead_letter(writer, b"02269", value, [("commune-code", b"02269")], source_topic=RAW,
                                          partition=0, offset=5, rejected_on=date(2026, 12, 1), retention_days=30)
    stored = (0, 9, sealed.key, sealed.value, [*sealed.headers, *context(Reason.MISSING_FIELD, 5)])
    reads: list[Keyring] = []

    async def keys_as_read(*_: Any) -> Keyring:  # the applicant erased after the first read of the keys
        ring = keyring()
        for _, key, record in key_messages(list(sealed.keys), ""):
            ring.apply(key, record)
            if reads:
                ring.apply(key, None)
        reads.append(ring)
        return ring

    async def read_into(_conn: Any, _topic: str, apply: Callable[[dlq.Stored], None], _since: Any = None) -> None:
        apply(stored)

    async def no_keys(*_: Any) -> set[bytes]:
        return set()

    async def rights(_conn: Any, topics: Any) -> dict[str, str]:
        return dict.fromkeys(topics, "write")

    written: list[Any] = []

    async def replay(_conn: Any, _namespace: str, letters: Any, *_: Any) -> list[Any]:
        written.extend(letters)
        return list(letters)

    for name, env in PRIVACY_ENV.items():
        monkeypatch.setenv(name, env)
    monkeypatch.setattr(dlq, "_keyring", keys_as_read)
    monkeypatch.setattr(dlq, "read_into", read_into)
    monkeypatch.setattr(dlq, "replayed_keys", no_keys)
    monkeypatch.setattr(dlq_commands, "topic_rights", rights)
    monkeypatch.setattr(replaying, "replay", replay)
    result = CliRunner().invoke(app, ["dlq", "replay", "--bootstrap", "127.0.0.1:1"], env={"COLUMNS": "300"})
    assert written == [], result.output
    assert "1 erased or expired" in result.output, result.output
