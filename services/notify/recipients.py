"""Who a rule tells: an event's recipients, each with the channel that reaches them and their audience. Pure.

The `to` of each rule in `rules.RULES`: the applicant of a dossier (their own contacts, sealed until delivery), or
people of the commune's directory (`directory.Directory`: its centre, cluster operators, village contacts).
"""

from __future__ import annotations

from schemas.dossier import DossierStatusChanged
from schemas.envelope import Event
from schemas.notification import Audience, ChannelKind, Recipient
from schemas.personal import SealedApplicant
from services.notify.directory import Contact, Directory
from services.notify.personal import APPLICANT, applicant_recipient
from services.privacy.applicant import reaches

Target = tuple[Recipient, ChannelKind, Audience]
"""A recipient, the channel that reaches them, and their audience (a citizen's messages wait out quiet hours)."""


def applicant(e: Event, _: Directory) -> list[Target]:
    """The citizen: Zalo ZNS if we know the account (SMS fallback), else SMS, else e-mail."""
    a = e.data.applicant if isinstance(e, DossierStatusChanged) else None
    if a is None:
        return []
    if isinstance(a, SealedApplicant):  # the canonical form: contacts stay sealed until delivery
        found = applicant_recipient(e.id, a)
        return [(found[0], found[1], Audience.CITIZEN)] if found else []
    # a clear applicant (sealing off): its contacts as intake would have sealed them, a form's filler left out
    phone, email, zalo = (v if reaches(f, v := getattr(a, f)) else None for f in ("phone", "email", "zalo_user_id"))
    if zalo:
        channel = ChannelKind.ZALO
    elif phone:
        channel = ChannelKind.SMS
    elif email:
        channel = ChannelKind.EMAIL
    else:
        return []
    r = Recipient(ref=APPLICANT, locale=a.preferred_locale, phone=phone, email=email, zalo_user_id=zalo)
    return [(r, channel, Audience.CITIZEN)]


def staff(contacts: list[Contact]) -> list[Target]:
    return [(c.recipient(), c.channel, Audience.STAFF) for c in contacts]


def citizens(contacts: list[Contact]) -> list[Target]:
    return [(c.recipient(), c.channel, Audience.CITIZEN) for c in contacts]


def village_contacts(e: Event, d: Directory) -> list[Target]:
    return citizens(d.village(e.commune, e.data.village))


def centre(e: Event, d: Directory) -> list[Target]:
    return staff(d.of(e.commune).centre)


def cluster_operators(e: Event, d: Directory) -> list[Target]:
    return staff(d.cluster_operators(e.commune, e.data.target_clusters))


def failed_cluster_operators(e: Event, d: Directory) -> list[Target]:
    return staff(d.cluster_operators(e.commune, [e.data.cluster_id]))


def emergency_audience(e: Event, d: Directory) -> list[Target]:
    villages = [t for v in e.data.target_villages for t in citizens(d.village(e.commune, v))]
    return cluster_operators(e, d) + villages
