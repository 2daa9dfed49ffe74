"""Fake but plausible applicants: PERSONAL DATA shaped like the real thing, for the `applicant` group only."""

from __future__ import annotations

import random
import unicodedata
from typing import Any

from schemas.codes import Locale
from services.simulator.catalogue import (
    FEMALE_GIVEN,
    FEMALE_MIDDLE,
    FOREIGN_NAMES,
    KHMER_NAMES,
    KINH_SURNAMES,
    MALE_GIVEN,
    MALE_MIDDLE,
    PHONE_PREFIXES,
    TAY_NUNG_SURNAMES,
)

LOCALE_WEIGHTS = {Locale.VI: 0.9, Locale.KM: 0.05, Locale.EN: 0.05}


def ascii_fold(text: str) -> str:
    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def vietnamese_name(rng: random.Random) -> tuple[str, bool]:
    """(full name, is_female); Tày/Nùng surnames as often as Kinh ones (northern mountain provinces)."""
    female = rng.random() < 0.5
    surname = rng.choice(TAY_NUNG_SURNAMES if rng.random() < 0.5 else KINH_SURNAMES)
    middle = rng.choice(FEMALE_MIDDLE if female else MALE_MIDDLE)
    given = rng.choice(FEMALE_GIVEN if female else MALE_GIVEN)
    return f"{surname} {middle} {given}", female


def phone(rng: random.Random) -> str:
    return rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**7):07d}"


def citizen_id(rng: random.Random, province: str, female: bool) -> str:
    """12-digit CCCD: birth-province code, gender/century digit, birth year, serial."""
    year = rng.randint(1950, 2006)
    century_gender = (0 if year < 2000 else 2) + (1 if female else 0)
    return f"0{province}{century_gender}{year % 100:02d}{rng.randrange(10**6):06d}"


def applicant(rng: random.Random, province: str, address: str) -> dict[str, Any]:
    """The canonical `applicant` group; some fields are missing, as in real submissions."""
    locale = rng.choices(list(LOCALE_WEIGHTS), weights=list(LOCALE_WEIGHTS.values()))[0]
    female = rng.random() < 0.5
    if locale is Locale.KM:
        name = rng.choice(KHMER_NAMES)
    elif locale is Locale.EN and rng.random() < 0.6:
        name = rng.choice(FOREIGN_NAMES)
    else:
        name, female = vietnamese_name(rng)
    person: dict[str, Any] = {"name": name, "preferred_locale": locale.value, "address": address}
    if locale is not Locale.EN or rng.random() < 0.3:
        person["id_number"] = citizen_id(rng, province, female)
    if rng.random() < 0.93:
        person["phone"] = phone(rng)
    if rng.random() < 0.25:
        person["email"] = ascii_fold(name).lower().replace(" ", "").replace("'", "") + f"{rng.randrange(100)}@gmail.com"
    if rng.random() < 0.35:
        person["zalo_user_id"] = str(rng.randrange(10**18, 10**19))
    return person
