"""The pseudonymous subjects an applicant is sealed under, from the pepper: what a keyring and the gateway's stand-in
(`sizing.StandInKeys`) share, so both name an applicant alike."""

from __future__ import annotations

import os

from services.privacy import crypto


class Pseudonyms:
    """Subject ids under one pepper (kept keyed: `crypto.keyed_pepper`); they never reveal the identifier."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = crypto.keyed_pepper(pepper)

    def subject(self, kind: str, value: str) -> str:
        """The pseudonymous subject id of an identifier (`cccd`, `phone`, `email`, `zalo`)."""
        return crypto.identifier_subject(self._pepper, kind, value)

    def dossier_subject(self, source: str, dossier_code: str) -> str:
        """The subject of an applicant with no CCCD, phone, e-mail or Zalo id: their dossier's (`erase_subject`)."""
        return crypto.dossier_subject(self._pepper, source, dossier_code)

    @staticmethod
    def anonymous_subject() -> str:
        """A random `r-` subject, as intake gave such an applicant before 2026-12-03 (a new one, hence a new permanent
        key, for every event): such subjects stay in old data, readable and erasable; nothing seals under new ones."""
        return "r-" + crypto.b64(os.urandom(16))
