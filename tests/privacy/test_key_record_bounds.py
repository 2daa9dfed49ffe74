"""Key records within the bounds every reader takes (`schemas.personal.KeyRecord`, `schemas.limits`): nothing a
keyring writes is refused by its own readers (pure, no broker)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from schemas.limits import EARLIEST, LATEST
from schemas.personal import ERASED_MARK, ErasureMark, KeyRecord, record_key
from services.privacy import crypto
from services.privacy.disk import DiskKeys
from services.privacy.key_records import encoded
from services.privacy.keyring import Keyring
from services.privacy.settings import PrivacySettings
from tests.privacy.keys import KEK, NOW, PEPPER

pytestmark = pytest.mark.unit

OFFSETS = st.builds(timezone, st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59)))
ANY_TIME = st.datetimes(timezones=OFFSETS).filter(lambda t: _utc_holds(t))
"""Any aware time whose UTC instant `datetime` holds (a caller's arithmetic gives no other)."""
MARKS = st.none() | st.datetimes(EARLIEST.replace(tzinfo=None), LATEST.replace(tzinfo=None), timezones=st.just(
    EARLIEST.tzinfo))


def _utc_holds(value: datetime) -> bool:
    try:
        value.astimezone(EARLIEST.tzinfo)
    except OverflowError:
        return False
    return True


def _ring(table: DiskKeys | None = None) -> Keyring:
    return Keyring({"kek-1": KEK}, "kek-1", PEPPER, clock=lambda: NOW, table=table)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expires_at=st.none() | ANY_TIME, mark=MARKS)
def test_every_key_record_a_keyring_writes_is_read_by_every_reader(tmp_path: Path, expires_at: datetime | None,
                                                                  mark: datetime | None) -> None:
    """Whatever expiry a caller asks for (any offset, any year) and whatever erasure mark the subject has (up to the
    last time a record may hold), the record `key_for` builds is a valid `KeyRecord` that a reader in memory, one on
    disk and the writer itself apply without refusing it (review: an expiry past 2100, or a key dated just after a
    mark of 2100-12-31T23:59:59.999999Z, was written and then refused by every reader, its dead letters unopenable)."""
    subject = "a-subject"
    disk = DiskKeys(tmp_path, cached=1)
    writer, readers = _ring(), [_ring(), _ring(disk)]
    try:
        if mark is not None:
            value = ErasureMark(subject=subject, created_up_to=mark).model_dump_json().encode()
            for keyring in (writer, *readers):
                keyring.apply(record_key(subject, ERASED_MARK), value)
        _, _, records = writer.key_for(subject, expires_at)
        assert len(records) == 1
        value = encoded(records[0])
        read = KeyRecord.model_validate_json(value)  # raises ValidationError if refused
        assert (read.created_at, read.expires_at) == (records[0].created_at, records[0].expires_at)
        for keyring in (writer, *readers):
            keyring.apply(records[0].record_key, value)  # raises PrivacyError if refused
            keyring.expire()
            assert keyring.unreadable_keys() == 0
    finally:
        for keyring in (writer, *readers):
            keyring.close()


def test_the_dead_letter_retention_is_bounded() -> None:
    """Ten years at most: a dead letter's key expires within the times a key record may hold (an unbounded setting
    overflowed `date + timedelta` at every dead letter, or wrote expiries its readers refuse)."""
    secrets = {"kek": SecretStr(crypto.b64(KEK)), "pepper": SecretStr(crypto.b64(PEPPER))}
    assert PrivacySettings(**secrets, dead_letter_retention_days=3650).dead_letter_retention_days == 3650
    with pytest.raises(ValidationError):
        PrivacySettings(**secrets, dead_letter_retention_days=3651)
