"""Notify and personal data (ADR 0015): contacts stay sealed everywhere but in the one provider call.

- `applicant_recipient`: from a sealed applicant group, a recipient whose contacts are the
  sealed tokens themselves (nothing is decrypted when rules run).
- `redact`: what a request may hold when written to a topic (dead letters, replays): sealed
  contacts, and no clear phone, e-mail or Zalo id (a directory contact is looked up again, an
  opened applicant's is opened again).
- `deferrable`: what the ledger keeps of a deferred request, `redact` but for an applicant's
  contacts that came in clear (a deployment that seals nothing, `INTAKE_SEAL_PERSONAL_DATA=false`):
  nothing could give them back, and the canonical topic holds them as long. Only notify writes
  the ledger; a replay, which an operator writes, never names a contact in clear.
- `Opener`: at delivery only, the clear contacts the request's channel needs, from the key
  store (an applicant's) or the directory (staff and village contacts). An erased applicant
  raises `Erased`: the dispatcher skips the notification as erased, counted. A webhook body
  for a subscriber entitled to personal data gets its applicant opened, with its pseudonymous
  `subject`, which the erasure notices name (left out if erased; ADR 0035).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson

from schemas.codes import Locale
from schemas.notification import ChannelKind, NotificationRequest, Recipient
from schemas.personal import PERSONAL_FIELDS, SealedApplicant, SealedValue
from services.notify.directory import Directory
from services.privacy.applicant import open_value, sealed_value
from services.privacy.crypto import Erased
from services.privacy.key_records import KeyUnknown
from services.privacy.keyring import Keyring

CONTACTS = ("phone", "email", "zalo_user_id")
APPLICANT = "applicant"
"""The recipient ref of a dossier's applicant (every other recipient is a directory contact or a subscriber)."""
NEEDS: dict[ChannelKind, tuple[str, ...]] = {
    ChannelKind.SMS: ("phone",), ChannelKind.ZALO: ("zalo_user_id", "phone"), ChannelKind.EMAIL: ("email",),
    ChannelKind.WEBHOOK: (),
}
"""What each channel reads of a recipient (Zalo falls back to SMS): the only fields opened for it."""


class NoKeys(Erased):
    """This notify has no key-encryption key configured, so no sealed contact can be opened."""


def applicant_recipient(event_id: str, applicant: SealedApplicant) -> tuple[Recipient, ChannelKind] | None:
    """The applicant as a recipient with sealed contacts, on the channel their contacts allow (None: unreachable)."""
    sealed = {f: v for f in CONTACTS if (v := sealed_value(event_id, applicant, f)) is not None}
    if "zalo_user_id" in sealed:
        channel = ChannelKind.ZALO
    elif "phone" in sealed:
        channel = ChannelKind.SMS
    elif "email" in sealed:
        channel = ChannelKind.EMAIL
    else:
        return None
    return Recipient(ref=APPLICANT, locale=applicant.preferred_locale or Locale.VI, sealed=sealed), channel


def redact(request: NotificationRequest) -> NotificationRequest:
    """The request as it may be written to a topic: no clear contact (sealed ones and the webhook URL stay)."""
    r = request.recipient
    if all(getattr(r, f) is None for f in CONTACTS):
        return request
    return request.model_copy(update={"recipient": r.model_copy(update=dict.fromkeys(CONTACTS))})


def deferrable(request: NotificationRequest) -> NotificationRequest:
    """The request as the ledger keeps it while deferred or parked: `redact`, but an applicant's contacts that came
    in clear, unsealed, are kept (without them it could never be sent: every citizen's message deferred for the
    quiet hours was released without its phone). An opened applicant keeps its sealed tokens: redacted."""
    r = request.recipient
    if r.ref == APPLICANT and not r.sealed:
        return request
    return redact(request)


OpenContacts = Callable[[NotificationRequest], Awaitable[NotificationRequest]]
"""What the dispatcher calls before a provider call (an `Opener`; `as_is` in tests and tools)."""


async def as_is(request: NotificationRequest) -> NotificationRequest:
    return request


class Refresh(Protocol):
    """Waits until the key store has applied every key record committed so far (`KeyStore.refresh`)."""

    async def __call__(self) -> None: ...


class Opener:
    def __init__(self, directory: Directory, keyring: Keyring | None = None, refresh: Refresh | None = None) -> None:
        self.directory, self.keyring, self.refresh = directory, keyring, refresh

    async def __call__(self, request: NotificationRequest) -> NotificationRequest:
        """`request` with the clear contacts its channel needs; `Erased` when the applicant's key is gone."""
        r = request.recipient
        needs = NEEDS.get(request.channel, ())
        if request.payload is not None and '"key_id"' in request.payload:
            return request.model_copy(update={"payload": await self._open_payload(request.payload)})
        if r.sealed:
            clear = {f: await self._open(r, f) for f in needs if f in r.sealed}
            # the sealed tokens stay beside the clear values: `redact` of the opened request drops the clear ones
            return request.model_copy(update={"recipient": r.model_copy(update=clear)})
        if needs and all(getattr(r, f) is None for f in CONTACTS):
            contact = self.directory.contact(request.commune, r.ref)
            if contact is not None:
                clear = {f: getattr(contact, f) for f in CONTACTS}
                return request.model_copy(update={"recipient": r.model_copy(update=clear)})
        return request

    async def _open(self, recipient: Recipient, field: str) -> str:
        assert recipient.sealed is not None
        return await self._open_value(recipient.sealed[field])

    async def _open_value(self, value: SealedValue) -> str:
        if self.keyring is None:
            raise NoKeys("no key-encryption key configured")
        try:
            return open_value(self.keyring, value)
        except KeyUnknown:
            if self.refresh is None:
                raise
            await self.refresh()  # the key record may be committed and not read yet
            return open_value(self.keyring, value)

    async def _open_payload(self, payload: str) -> str:
        """A webhook body of a subscriber entitled to personal data: its applicant opened, or left out if erased."""
        doc = orjson.loads(payload)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("applicant"), dict):
            return payload
        sealed = SealedApplicant.model_validate(data["applicant"])
        # the pseudonym kept beside the clear fields: what an erasure's notice names (ADR 0035); the published
        # schema's `OpenedApplicant`, so the body passes the schema of its type as the canonical event does
        clear: dict[str, str] = {"subject": sealed.subject, "preferred_locale": sealed.preferred_locale.value}
        try:
            for field in PERSONAL_FIELDS:
                if (value := sealed_value(str(doc.get("id", "")), sealed, field)) is not None:
                    clear[field] = await self._open_value(value)
        except Erased:
            data.pop("applicant")
        else:
            data["applicant"] = clear
        return orjson.dumps(doc).decode()
