"""The simulated communes (one province's, or all 3,321 of the country's), and the planned steps of a lifecycle."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.admin import commune_name, communes_of, province_names
from services.simulator.catalogue import VILLAGE_STEMS


class UnknownProvince(ValueError):
    """The province code is not one of the 34 official ones."""


@dataclass(frozen=True, slots=True)
class Commune:
    code: str
    province: str
    name: str
    villages: tuple[str, ...]
    clusters: tuple[str, ...]  # loudspeaker cluster ids
    teams: tuple[str, ...]  # mobile / community digital-technology teams
    portal_shape: bool  # its one-stop software syncs dossiers in the national portal's shape
    compact_dates: bool  # portal dates as yyyyMMddHHmmss rather than ISO 8601
    utc_times: bool  # canonical times in UTC ("Z") rather than +07:00

    @property
    def centre(self) -> str:
        kind, _, rest = self.name.partition(" ")
        return f"Trung tâm Phục vụ hành chính công {kind.lower()} {rest}"

    def cluster_villages(self, cluster: str) -> list[str]:
        i = self.clusters.index(cluster)
        return [v for j, v in enumerate(self.villages) if j % len(self.clusters) == i]


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a lifecycle, planned: when it happens, its type, subject and `data` (datetimes still typed)."""

    at: datetime
    type: str
    subject: str
    data: dict[str, Any]
    history: tuple[tuple[datetime, int], ...] = ()  # dossiers: (time, status) of every step so far, this one included


def build_communes(rng: random.Random, provinces: str | tuple[str, ...], portal_share: float) -> list[Commune]:
    """One profile per official commune of `provinces` (a code, or several), in province then commune order."""
    chosen = (provinces,) if isinstance(provinces, str) else provinces
    for province in chosen:
        if province not in province_names():
            known = ", ".join(sorted(province_names()))
            raise UnknownProvince(f"province {province!r} is not an official code; known: {known}")
    communes = []
    for province, code in ((p, c) for p in chosen for c in communes_of(p)):
        name = commune_name(code)
        urban = name.startswith("Phường")
        n = rng.randint(6, 12)
        villages = tuple(f"Tổ dân phố {i + 1}" for i in range(n)) if urban else tuple(
            ("Thôn " if rng.random() < 0.7 else "Bản ") + stem for stem in rng.sample(VILLAGE_STEMS, n)
        )
        clusters = tuple(f"{code}-C{i + 1:02d}" for i in range(max(2, n // 2)))
        teams = tuple(f"{code}-T{i + 1:02d}" for i in range(rng.randint(3, 23)))
        communes.append(
            Commune(code, province, name, villages, clusters, teams, rng.random() < portal_share,
                    rng.random() < 0.6, rng.random() < 0.5)
        )
    return communes


class Sequences:
    """Per-commune running numbers for dossier codes and entity ids (unique for the whole run)."""

    def __init__(self) -> None:
        self._next: defaultdict[tuple[str, ...], int] = defaultdict(int)

    def next(self, *scope: str) -> int:
        self._next[scope] += 1
        return self._next[scope]
