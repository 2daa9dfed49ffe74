"""The pure traffic generator: valid, realistic, deterministic, and bad exactly where and as often as asked."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta

import orjson
import pytest
from sim_checks import event_problem, is_portal, parse, portal_dates, portal_problem

from schemas.admin import communes_of
from schemas.codes import AnnouncementCategory, Channel, Priority, Timeliness
from schemas.deadletter import Reason
from schemas.dossier import DossierStatusChanged, timeliness_of
from schemas.events import EVENT_TYPES, Family
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from services.simulator.generate import DEFAULT_NOW, TrafficConfig, generate, traffic
from services.simulator.render import DEFECT_HEADER
from services.simulator.world import UnknownProvince

pytestmark = pytest.mark.unit
LANG_SON = set(communes_of("20"))
VALID = generate(12_000, seed=11, province="20", invalid_share=0.0)
MIXED = [e.record for e in itertools.islice(traffic(12, DEFAULT_NOW, TrafficConfig(invalid_share=0.1)), 8_000)]


def test_every_valid_structured_record_passes_its_canonical_model() -> None:
    """Each structured record validates with EVENT_TYPES[type].model_validate_json, all types occur."""
    structured = [r for r in VALID if not is_portal(r)]
    assert len(structured) > 5_000
    assert [p for r in structured if (p := event_problem(r))] == []
    assert {parse(r)["type"] for r in structured} == set(EVENT_TYPES)  # type: ignore[index]


def test_every_valid_portal_record_is_complete_and_ordered() -> None:
    """Portal-shape dossiers carry the header, required fields, known codes and ordered dates."""
    portal = [r for r in VALID if is_portal(r)]
    assert len(portal) > 1_000
    assert all(r.family is Family.DOSSIER for r in portal)
    assert [p for r in portal if (p := portal_problem(r, LANG_SON))] == []
    forms = Counter(len(v) == 14 for r in portal for k, v in parse(r).items() if k == "NgayNopHoSo")  # type: ignore[union-attr]
    assert forms[True] and forms[False], "both yyyyMMddHHmmss and ISO 8601 dates occur"


def test_valid_records_are_accepted_by_intake() -> None:
    """Contract with services.intake: every valid record normalises to a canonical event."""
    rejected = [r for r in VALID[:4_000] if not isinstance(normalise(r.family, r.value, r.headers), Accepted)]
    assert rejected == []


def test_invalid_share_is_respected() -> None:
    """With --invalid-share 0.1, 10% ± 1.5 points of records are bad, judged independently of the generator's label."""
    bad = [r for r in MIXED if (portal_problem(r, LANG_SON) if is_portal(r) else event_problem(r))]
    assert 0.085 <= len(bad) / len(MIXED) <= 0.115
    labelled = [r for r in MIXED if DEFECT_HEADER in dict(r.headers)]
    assert [r.value for r in bad] == [r.value for r in labelled]


def test_invalid_records_cover_every_kind_and_intake_gives_the_labelled_reason() -> None:
    """All defect kinds occur; intake rejects each with the reason the simulator labelled."""
    labels = Counter(Reason(dict(r.headers)[DEFECT_HEADER].decode()) for r in MIXED if DEFECT_HEADER in dict(r.headers))
    assert set(labels) == {
        Reason.NOT_JSON, Reason.NOT_UTF8, Reason.INVALID_FIELD, Reason.UNKNOWN_COMMUNE, Reason.MISSING_FIELD,
        Reason.IMPOSSIBLE_DATES, Reason.UNKNOWN_STATUS, Reason.PROVINCE_MISMATCH, Reason.MISSING_COMMUNE_HEADER,
    }
    wrong = []
    for r in MIXED:
        if (label := dict(r.headers).get(DEFECT_HEADER)) is not None:
            out = normalise(r.family, r.value, r.headers)
            if isinstance(out, Accepted) or out.rejection.reason.value != label.decode():
                wrong.append((label, out))
    assert wrong == []


def test_zero_and_full_invalid_share() -> None:
    """invalid_share 0 gives no bad record, 1 gives only bad ones."""
    assert not any(DEFECT_HEADER in dict(r.headers) for r in VALID)
    assert all(DEFECT_HEADER in dict(r.headers) for r in generate(300, seed=1, invalid_share=1.0))


def _completed_timeliness(records: list) -> Counter[Timeliness]:
    seen: Counter[Timeliness] = Counter()
    for r in records:
        if r.family is not Family.DOSSIER:
            continue
        if is_portal(r):
            obj = parse(r)
            if obj and obj["TrangThaiHoSo"] == 9:
                dates = portal_dates(obj)
                seen[timeliness_of(dates["NgayKetThucXuLy"], dates["NgayHenTra"])] += 1  # type: ignore[index]
        else:
            event = DossierStatusChanged.model_validate_json(r.value)
            if event.data.status == 9 and event.data.timeliness:
                seen[event.data.timeliness] += 1
    return seen


def test_about_95_percent_of_completed_dossiers_are_early_or_on_time() -> None:
    """Processed dossiers: early or on time 95% ± 3 points, and some are late."""
    seen = _completed_timeliness(generate(25_000, seed=5, families=[Family.DOSSIER]))
    total = sum(seen.values())
    assert total > 2_000
    assert 0.92 <= 1 - seen[Timeliness.LATE] / total <= 0.98
    assert seen[Timeliness.LATE] > 0 and seen[Timeliness.EARLY] > 0 and seen[Timeliness.ON_TIME] > 0


def test_same_seed_same_records_other_seed_other_records() -> None:
    """Determinism by seed (and fixed clock)."""
    assert generate(800, seed=42, invalid_share=0.05) == generate(800, seed=42, invalid_share=0.05)
    assert generate(800, seed=42) != generate(800, seed=43)


@pytest.mark.parametrize("province", ["20", "79"])
def test_only_real_communes_of_the_province_are_used(province: str) -> None:
    """Keys, `commune` attributes and `commune-code` headers name official communes of the chosen province."""
    communes = set(communes_of(province))
    used = set()
    for r in generate(4_000, seed=3, province=province):
        used.add(r.key.decode())
        headers = dict(r.headers)
        used.add(headers["commune-code"].decode() if "commune-code" in headers else parse(r)["commune"])  # type: ignore[index]
        if not is_portal(r):
            assert parse(r)["province"] == province  # type: ignore[index]
    assert used <= communes
    assert len(used) > len(communes) // 2


def test_unknown_province_is_refused() -> None:
    """A province code that is not official raises a named error."""
    with pytest.raises(UnknownProvince):
        generate(1, province="99")


def test_event_times_are_plausible() -> None:
    """No event time is after the clock, none before the backfill window."""
    config = TrafficConfig(backfill_days=14)
    times = [e.at for e in itertools.islice(traffic(9, DEFAULT_NOW, config), 6_000)]
    assert max(times) <= DEFAULT_NOW
    assert min(times) >= DEFAULT_NOW - timedelta(days=14)


def test_traffic_looks_like_a_commune_province() -> None:
    """Channel mix, emergencies, failed broadcasts, khmer/english applicants and mobile-team work all occur."""
    events = [orjson.loads(r.value) for r in VALID if not is_portal(r)]
    first_status = {}
    for e in events:
        if e["type"].endswith("dossier.status-changed.v1"):
            first_status.setdefault(e["subject"], e["data"]["channel"])
    channels = Counter(first_status.values())
    assert 0.4 <= channels[Channel.ONLINE.value] / sum(channels.values()) <= 0.6
    assert channels[Channel.POSTAL.value] and channels[Channel.MOBILE_TEAM.value]
    scheduled = [e["data"] for e in events if e["type"].endswith("announcement.scheduled.v1")]
    emergencies = [a for a in scheduled if AnnouncementCategory(a["category"]).is_emergency]
    assert emergencies and all(a["priority"] == Priority.EMERGENCY.value for a in emergencies)
    assert any(e["type"].endswith("broadcast-failed.v1") for e in events)
    locales = Counter(e["data"].get("applicant", {}).get("preferred_locale")
                      for e in events if "applicant" in e.get("data", {}))
    assert locales["km"] and locales["en"] and locales["vi"] > locales["km"] + locales["en"]
    completed = [e["data"] for e in events if e["type"].endswith("visit-completed.v1")]
    assert completed and sum(v["accounts_activated"] for v in completed) > 0


def test_family_filter() -> None:
    """families=[DOSSIER] yields only dossier records (what the intake benchmark uses)."""
    assert {r.family for r in generate(500, seed=2, families=[Family.DOSSIER], invalid_share=0.2)} == {Family.DOSSIER}
