"""Retiring a key-encryption key: the settings refuse an old KEK that would replace the current one (pure)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from services.privacy import crypto
from services.privacy.crypto import PrivacyError
from services.privacy.settings import PrivacySettings
from tests.privacy.keys import KEK, PEPPER

pytestmark = pytest.mark.unit

KEK2 = bytes(range(100, 132))
KEKS = {"kek-1": KEK, "kek-2": KEK2}


def _old_settings(old_keks: str, kek_id: str = "kek-1") -> PrivacySettings:
    return PrivacySettings(kek=SecretStr(crypto.b64(KEK2)), kek_id=kek_id, old_keks=SecretStr(old_keks),
                           pepper=SecretStr(crypto.b64(PEPPER)))


def test_an_old_kek_under_the_current_id_is_refused_naming_the_id_not_the_key() -> None:
    """Rotating without a new PRIVACY_KEK_ID listed the old KEK under the current id, and it silently replaced it."""
    with pytest.raises(PrivacyError, match="'kek-1'") as refused:
        _old_settings(f"kek-1:{crypto.b64(KEK)}").keks()
    assert crypto.b64(KEK) not in str(refused.value) and crypto.b64(KEK2) not in str(refused.value)
    assert _old_settings(f"kek-1:{crypto.b64(KEK)}", kek_id="kek-2").keks() == KEKS


@pytest.mark.parametrize("length", [16, 31, 33])
def test_an_old_kek_not_32_bytes_is_refused_naming_its_id(length: int) -> None:
    """A truncated or padded old KEK is refused when the settings are read, not when a key of it fails to open."""
    short = crypto.b64(bytes(range(length)))
    with pytest.raises(PrivacyError, match="'kek-0' is not 32 bytes") as refused:
        _old_settings(f"kek-0:{short}", kek_id="kek-2").keks()
    assert short not in str(refused.value)
