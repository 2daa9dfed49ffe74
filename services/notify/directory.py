"""Who to tell at a commune: officers, the centre head, village contacts, loudspeaker operators.

Loaded once from a TOML file (`infra/notify/directory.example.toml`); `[communes."*"]`
is the default for communes without their own entry. Lookups are pure.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import Field

from schemas.codes import Locale
from schemas.envelope import Model
from schemas.notification import ChannelKind, Recipient

WILDCARD = "*"


class Contact(Model):
    """PERSONAL DATA in phone/email/zalo_user_id; `ref` is the only thing logs may show."""

    ref: str
    channel: ChannelKind = ChannelKind.EMAIL
    locale: Locale = Locale.VI
    phone: str | None = Field(default=None, repr=False)
    email: str | None = Field(default=None, repr=False)
    zalo_user_id: str | None = Field(default=None, repr=False)

    def recipient(self) -> Recipient:
        return Recipient(ref=self.ref, locale=self.locale, phone=self.phone, email=self.email,
                         zalo_user_id=self.zalo_user_id)


class CommuneContacts(Model):
    centre: list[Contact] = Field(default_factory=list, description="The centre's shared inbox / group")
    centre_head: list[Contact] = Field(default_factory=list)
    operators: list[Contact] = Field(default_factory=list, description="Loudspeaker system operators")
    officers: dict[str, Contact] = Field(default_factory=dict, description="By staff account id")
    villages: dict[str, list[Contact]] = Field(default_factory=dict, description="By village name; '*' for any")
    clusters: dict[str, list[Contact]] = Field(default_factory=dict, description="By cluster id; '*' for any")


class Directory(Model):
    communes: dict[str, CommuneContacts] = Field(default_factory=dict)

    def of(self, commune: str) -> CommuneContacts:
        return self.communes.get(commune) or self.communes.get(WILDCARD) or CommuneContacts()

    def officer(self, commune: str, officer_id: str | None) -> list[Contact]:
        """The responsible officer, or the centre when the dossier has none we know."""
        contacts = self.of(commune)
        found = contacts.officers.get(officer_id or "")
        return [found] if found else list(contacts.centre)

    def village(self, commune: str, village: str) -> list[Contact]:
        v = self.of(commune).villages
        return list(v.get(village) or v.get(WILDCARD) or [])

    def cluster_operators(self, commune: str, clusters: list[str]) -> list[Contact]:
        c = self.of(commune)
        found = {x.ref: x for cid in clusters for x in (c.clusters.get(cid) or c.clusters.get(WILDCARD) or [])}
        return list(found.values()) or list(c.operators)

    def contact(self, commune: str, ref: str) -> Contact | None:
        """The contact `ref` of the commune (a request written without its clear contact is filled from it)."""
        c = self.of(commune)
        groups = [c.centre, c.centre_head, c.operators, list(c.officers.values()),
                  *c.villages.values(), *c.clusters.values()]
        return next((x for group in groups for x in group if x.ref == ref), None)


def load_directory(path: Path | None) -> Directory:
    if path is None:
        return Directory()
    return Directory.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
