"""Who to tell at a commune: officers, the centre head, village contacts, loudspeaker operators.

Loaded once from a TOML file (`infra/notify/directory.example.toml`); `[communes."*"]`
is the default, group by group: a commune's own group (its centre, its operators, its
village or cluster entry) is used when it has one, the wildcard's otherwise. A commune
that lists one village keeps the wildcard's centre, officers, operators and other
villages. Lookups are pure.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator, model_validator

from schemas.codes import Locale
from schemas.envelope import Model
from schemas.notification import ChannelKind, Recipient
from schemas.text import name_key

WILDCARD = "*"


class Contact(Model):
    """PERSONAL DATA in phone/email/zalo_user_id; `ref` is the only thing logs may show.

    Its fields have the limits of `Recipient`'s: a contact no recipient could hold refuses the directory at load
    (it loaded, and every event reaching that contact was skipped whole as internal_error)."""

    model_config = ConfigDict(hide_input_in_errors=True)  # a refused phone or e-mail is personal data

    ref: str = Field(min_length=1, max_length=128)
    channel: ChannelKind = ChannelKind.EMAIL
    locale: Locale = Locale.VI
    phone: str | None = Field(default=None, max_length=20, repr=False)
    email: str | None = Field(default=None, max_length=254, repr=False)
    zalo_user_id: str | None = Field(default=None, max_length=64, repr=False)

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

    @field_validator("villages")
    @classmethod
    def _villages_by_name_key(cls, villages: dict[str, list[Contact]]) -> dict[str, list[Contact]]:
        """Villages keyed by `schemas.text.name_key`: an event's "thôn  nà tàng", or its decomposed (NFD) spelling,
        finds the directory's "Thôn Nà Tàng" (before: nobody, or the '*' entry, even for a storm warning)."""
        keyed: dict[str, list[Contact]] = {}
        written: dict[str, str] = {}
        for name, contacts in villages.items():
            if (other := written.setdefault(key := name_key(name), name)) != name:
                raise ValueError(f"{other!r} and {name!r} name one village (names are matched in Unicode NFC, "
                                 "ignoring case and repeated spaces): keep one")
            keyed[key] = contacts
        return keyed


class Directory(Model):
    model_config = ConfigDict(hide_input_in_errors=True)  # pydantic shows a contact's input unless this hides it

    communes: dict[str, CommuneContacts] = Field(default_factory=dict)

    def _tables(self, commune: str) -> list[CommuneContacts]:
        """The commune's own table (if any), then the wildcard's (if any): most specific first."""
        return [t for key in dict.fromkeys((commune, WILDCARD)) if (t := self.communes.get(key)) is not None]

    def of(self, commune: str) -> CommuneContacts:
        """The commune's contacts: each group its own when it has one, else the wildcard's (a village's or cluster's
        entry is looked up with `village`, `cluster_operators`: the commune's '*' comes before the wildcard's
        named entries)."""
        tables = self._tables(commune)

        def group(pick: Callable[[CommuneContacts], list[Contact]]) -> list[Contact]:
            return next((list(found) for t in tables if (found := pick(t))), [])

        return CommuneContacts(
            centre=group(lambda t: t.centre), centre_head=group(lambda t: t.centre_head),
            operators=group(lambda t: t.operators),
            officers={k: v for t in reversed(tables) for k, v in t.officers.items()},
            villages={k: v for t in reversed(tables) for k, v in t.villages.items()},
            clusters={k: v for t in reversed(tables) for k, v in t.clusters.items()})

    def officer(self, commune: str, officer_id: str | None) -> list[Contact]:
        """The responsible officer, or the centre when the dossier has none we know."""
        found = next((o for t in self._tables(commune) if (o := t.officers.get(officer_id or ""))), None)
        return [found] if found else list(self.of(commune).centre)

    def _entry(self, commune: str, name: str, pick: Callable[[CommuneContacts], dict[str, list[Contact]]]
               ) -> list[Contact]:
        """A village's or cluster's contacts: the commune's entry for it, its '*', the wildcard's entry, its '*'."""
        return next((list(found) for t in self._tables(commune) for key in (name, WILDCARD)
                     if (found := pick(t).get(key))), [])

    def village(self, commune: str, village: str) -> list[Contact]:
        return self._entry(commune, name_key(village), lambda t: t.villages)

    def cluster_operators(self, commune: str, clusters: list[str]) -> list[Contact]:
        found = {x.ref: x for cid in clusters for x in self._entry(commune, cid, lambda t: t.clusters)}
        return list(found.values()) or list(self.of(commune).operators)

    def contact(self, commune: str, ref: str) -> Contact | None:
        """The contact `ref` of the commune, or of the wildcard (a request written without its clear contact is
        filled from it): one person, whichever group it is found in (`_one_contact_per_ref`)."""
        return next((x for t in self._tables(commune) for x in _contacts(t) if x.ref == ref), None)

    @model_validator(mode="after")
    def _one_contact_per_ref(self) -> Directory:
        """Within what one commune's lookups see (its table and the wildcard's), a ref names one phone, e-mail and
        Zalo id: a deferred message is written without them and refilled by its ref at delivery (`contact`), so
        a ref naming two people (two village heads as `village:head`, a commune's own reusing a wildcard ref)
        sent one's message to the other. The same contact in two groups (an operator also a cluster's) is one."""
        for key in self.communes:
            reaches: dict[str, tuple[str | None, ...]] = {}
            for c in self._reachable(key):
                reach = (c.phone, c.email, c.zalo_user_id)
                if reaches.setdefault(c.ref, reach) != reach:
                    where = f"communes.{key}" + ("" if key == WILDCARD else " with the wildcard's")
                    raise ValueError(f"{where}: ref {c.ref!r} names two different contacts (phone, e-mail or Zalo "
                                     "id); a deferred message is refilled by ref and could reach the other")
        return self


    def _reachable(self, commune: str) -> list[Contact]:
        """Every contact a lookup for `commune` can return: its own groups, and the wildcard's it does not replace (a
        commune's own centre replaces the wildcard's, whatever their refs; a commune's '*' village or cluster stands
        for every village or cluster it does not name, so none of the wildcard's is reached)."""
        merged, own = self.of(commune), self.communes.get(commune)

        def entries(pick: Callable[[CommuneContacts], dict[str, list[Contact]]]) -> dict[str, list[Contact]]:
            return pick(own) if own is not None and WILDCARD in pick(own) else pick(merged)

        return _contacts(CommuneContacts(
            centre=merged.centre, centre_head=merged.centre_head, operators=merged.operators,
            officers=merged.officers, villages=entries(lambda t: t.villages), clusters=entries(lambda t: t.clusters)))


def _contacts(table: CommuneContacts) -> list[Contact]:
    """Every contact of one table, in lookup order: centre, centre head, operators, officers, villages, clusters."""
    return [*table.centre, *table.centre_head, *table.operators, *table.officers.values(),
            *(x for group in table.villages.values() for x in group),
            *(x for group in table.clusters.values() for x in group)]


def load_directory(path: Path | None) -> Directory:
    if path is None:
        return Directory()
    return Directory.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
