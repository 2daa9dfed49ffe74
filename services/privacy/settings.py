"""Typed, frozen settings of personal-data protection: `PRIVACY_*` variables or secret files.

The key-encryption key (KEK) and the pepper of subject ids are secrets (`SecretStr`, never
logged), given as base64url text in `PRIVACY_KEK` / `PRIVACY_PEPPER` or in files
(`PRIVACY_KEK_FILE`, `PRIVACY_PEPPER_FILE`, e.g. mounted secrets). Older KEKs stay
readable through `PRIVACY_OLD_KEKS` (`id:base64url,...`, each under an id of its own) until
`commune-bus keys rewrap` has wrapped their keys under the current KEK (`privacy.rewrap`);
a key keeps the KEK it was made under until then (docs/runbooks.md, rotating the KEK).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.privacy import crypto
from services.privacy.crypto import PrivacyError
from services.privacy.keyring import Clock, Keyring, utcnow


class PrivacySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVACY_", frozen=True, populate_by_name=True, extra="ignore",
                                      allow_inf_nan=False)

    kek: SecretStr | None = Field(default=None, description="Key-encryption key, 32 bytes as base64url")
    kek_file: Path | None = Field(default=None, description="File holding the key-encryption key (base64url)")
    kek_id: str = Field(default="kek-1", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._-]+$",
                        description="Id of the current KEK, written in every key record: letters, digits, '.', '_', "
                        "'-' (a ':' would split it in PRIVACY_OLD_KEKS' id:key pairs)")
    old_keks: SecretStr | None = Field(default=None, description="Earlier KEKs still readable: id:base64url,...")
    pepper: SecretStr | None = Field(default=None, description="Secret of subject ids (HMAC key), >= 16 bytes")
    pepper_file: Path | None = Field(default=None, description="File holding the pepper (base64url)")
    dead_letter_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Retention of commune.dlq.intake: day keys of dead letters expire after "
        "it (at most ten years: a dead letter's key expires within the times a key record may hold)")
    state_dir: Path | None = Field(
        default=None,
        description="Where a service's keyring keeps its keys on disk (RocksDB, ADR 0034), kept across restarts with "
                    "the key topics' offsets, so a start reads only the keys written since (a local disk, one folder "
                    "per service instance); None: a fresh folder per run in the system's temporary folder, and the "
                    "key topics read from the beginning at every start")
    keys_cached: int = Field(
        default=100_000, ge=1, le=10_000_000,
        description="Subjects whose data keys a service's keyring keeps unwrapped in memory (the ones used last; "
        "~0.5 KB each); the rest are read from disk on use")

    @field_validator("state_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def configured(self) -> bool:
        """Whether a KEK and a pepper are given (a service without them cannot seal or open anything)."""
        return (self.kek is not None or self.kek_file is not None) and (
            self.pepper is not None or self.pepper_file is not None)

    def keks(self) -> dict[str, bytes]:
        """Every KEK by id: the current one and `PRIVACY_OLD_KEKS`. An old KEK under the current id is refused (it
        silently replaced the current KEK: a rotation that forgot `PRIVACY_KEK_ID`), as is one not 32 bytes; the
        error names the id, never a key."""
        current = _secret(self.kek, self.kek_file, "KEK")
        keks = {self.kek_id: current}
        if self.old_keks is not None:
            for number, item in enumerate(self.old_keks.get_secret_value().split(","), start=1):
                if not item.strip():  # a trailing comma
                    continue
                kid, colon, text = item.strip().partition(":")
                if not (colon and kid and text.strip()):  # a key alone, an id alone: skipped, it was a KEK missing
                    raise PrivacyError(f"entry {number} of PRIVACY_OLD_KEKS is not id:base64url")
                kek = _old_kek(kid, text, self.kek_id)  # the id checked to be one before it is named
                if kid in keks:  # the later one replaced the earlier
                    raise PrivacyError(f"PRIVACY_OLD_KEKS lists {kid!r} twice: give each old KEK its own id")
                keks[kid] = kek
        return keks

    def keyring(self, clock: Clock = utcnow) -> Keyring:
        """A keyring holding every key in memory: short-lived readers and tests (close it all the same)."""
        return Keyring(self.keks(), self.kek_id, pepper_of(self), clock=clock)

    def service_keyring(self, name: str, clock: Clock = utcnow) -> Keyring:
        """A service's keyring: its keys on disk, the `keys_cached` subjects used last in memory (ADR 0034). With
        `state_dir`, kept there across restarts under `name` (namespace and instance: one process at a time);
        without, in a folder of the run, removed at `Keyring.close` (or swept by the next process, if killed)."""
        from services.privacy.disk import DiskKeys  # RocksDB only where a keyring is made
        from services.privacy.disk_folder import Kept
        # (the gateway reads these settings for erasures: its RSS is bounded, and rocksdict took 5 MB of it in CI)

        keks, pepper = self.keks(), pepper_of(self)  # refused before any folder is made
        kept = None if self.state_dir is None else Kept.of(name, keks, self.kek_id)
        table = DiskKeys(self.state_dir, self.keys_cached, kept=kept)
        try:
            return Keyring(keks, self.kek_id, pepper, clock=clock, table=table)
        except BaseException:
            table.close()
            raise


_KEK_ID = re.compile(r"[A-Za-z0-9._-]{1,40}")
"""What `kek_id` allows: an old entry whose id is not one (a key written first, `key:id`) is named by its place only,
as its "id" may be the key itself (and `PrivacyError` messages are logged)."""


def _old_kek(kek_id: str, text: str, current_id: str) -> bytes:
    if not _KEK_ID.fullmatch(kek_id):
        raise PrivacyError("an entry of PRIVACY_OLD_KEKS does not begin with a KEK id: write id:base64url, ...")
    if kek_id == current_id:
        raise PrivacyError(f"PRIVACY_OLD_KEKS lists {kek_id!r}, the current PRIVACY_KEK_ID: give the new KEK a new id")
    try:
        kek = crypto.unb64(text.strip())
    except crypto.Tampered:
        raise PrivacyError(f"the old KEK {kek_id!r} is not base64url") from None
    if len(kek) != crypto.KEY_BYTES:
        raise PrivacyError(f"the old KEK {kek_id!r} is not {crypto.KEY_BYTES} bytes")
    return kek


def pepper_of(settings: PrivacySettings) -> bytes:
    """The pepper alone (erasure needs no key-encryption key)."""
    pepper = _secret(settings.pepper, settings.pepper_file, "pepper")
    if len(pepper) < 16:
        raise PrivacyError("the pepper must be at least 16 bytes")
    return pepper


def _secret(value: SecretStr | None, file: Path | None, what: str) -> bytes:
    if value is not None:
        text = value.get_secret_value()
    elif file is not None:
        try:
            text = file.read_text(encoding="ascii")
        except OSError:
            raise PrivacyError(f"the {what} file cannot be read") from None
    else:
        raise PrivacyError(f"no {what}: set PRIVACY_{what.upper()} or PRIVACY_{what.upper()}_FILE")
    try:
        return crypto.unb64(text.strip())
    except crypto.Tampered:
        raise PrivacyError(f"the {what} is not base64url") from None


def generate_secret() -> str:
    """A fresh 32-byte secret as base64url (`commune-bus keys secret` prints one)."""
    return crypto.b64(crypto.new_key())

