"""Prometheus text exposition of the communes in the partitions this worker owns (`/metrics` serves it).

Built at scrape time from the owned partitions only, so a worker that loses a
partition stops exporting its communes at once, and the sum over workers is the
truth. Written by hand rather than through prometheus-client's generic
`generate_latest`, which needs ~0.4 s for the ~100k samples of 3,321 communes;
label values are official codes and fixed enums, so no escaping is needed.
Labels are `province`, `commune` and small enums: never personal data or dossier codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.metrics.aggregate import DELAY_BUCKETS_S, DURATION_BUCKETS_S, CommuneTotals
from services.metrics.partition import PartitionState


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter | gauge
    help: str
    key: str  # first element of the CommuneTotals key; the rest are `labels`
    labels: tuple[str, ...] = ()


COUNTERS: tuple[Family, ...] = (
    Family("commune_dossiers_received_total", "counter", "Dossiers received (any status except 1 and 3)",
           "received", ("channel",)),
    Family("commune_dossiers_completed_total", "counter", "Dossiers completed (status 9, 10) by timeliness",
           "completed", ("channel", "timeliness")),
    Family("commune_dossiers_paid_online_total", "counter", "Received dossiers paid online", "paid_online"),
    Family("commune_dossiers_with_fees_total", "counter", "Received dossiers with fees or charges", "with_fees"),
    Family("commune_dossiers_digitised_total", "counter", "Received dossiers with digitised components", "digitised"),
    Family("commune_mobile_team_visits_total", "counter", "Mobile-team visits completed", "visits"),
    Family("commune_mobile_team_households_reached_total", "counter", "Households visited by mobile teams",
           "households"),
    Family("commune_mobile_team_people_assisted_total", "counter", "People assisted by mobile teams", "people"),
    Family("commune_mobile_team_dossiers_assisted_total", "counter", "Dossiers submitted with mobile-team help",
           "visit_dossiers"),
    Family("commune_mobile_team_accounts_activated_total", "counter",
           "VNeID level-2 accounts activated by mobile teams", "accounts"),
    Family("commune_mobile_team_trainings_total", "counter", "Training sessions held", "trainings"),
    Family("commune_mobile_team_training_attendees_total", "counter", "Training attendees", "attendees"),
    Family("commune_mobile_team_support_answered_total", "counter", "Support requests answered", "support",
           ("channel",)),
    Family("commune_announcements_scheduled_total", "counter", "Loudspeaker announcements scheduled", "scheduled",
           ("category",)),
    Family("commune_broadcasts_total", "counter", "Loudspeaker cluster broadcasts ended, by outcome", "broadcast",
           ("category", "outcome")),
)
HISTOGRAMS = (
    ("commune_dossier_processing_duration_seconds", "Received to processing end, completed dossiers, by province",
     "duration", DURATION_BUCKETS_S),
    ("commune_broadcast_delay_seconds", "Planned start to broadcast start per loudspeaker cluster, by province",
     "delay", DELAY_BUCKETS_S),
)
ON_TIME = ("early", "on_time")


def _ratio(num: int, den: int) -> str | None:
    return repr(num / den) if den > 0 else None


def ratios(t: CommuneTotals) -> dict[str, tuple[int, int]]:
    """The national-service-index rates of one commune as (numerator, denominator)."""
    received = sum(v for k, v in t.counts.items() if k[0] == "received")
    completed = sum(v for k, v in t.counts.items() if k[0] == "completed")
    on_time = sum(v for k, v in t.counts.items() if k[0] == "completed" and k[2] in ON_TIME)
    return {
        "on_time": (on_time, completed),
        "online": (t.get("received", "online"), received),
        "paid_online": (t.get("paid_online"), t.get("with_fees")),
        "digitised": (t.get("digitised"), received),
    }


def render(partitions: Iterable[PartitionState], now_s: float) -> str:
    communes = sorted((c, t) for p in partitions for c, t in p.communes.items())
    prefix = {c: f'province="{t.province}",commune="{c}"' for c, t in communes}
    by_key = {fam.key: fam for fam in COUNTERS}
    lines: dict[str, list[str]] = {fam.key: [] for fam in COUNTERS}
    always = [fam for fam in COUNTERS if not fam.labels]  # zero until they happen, so ratios are 0/0, not absent
    for c, t in communes:
        for fam in always:
            if (fam.key,) not in t.counts:
                lines[fam.key].append(f"{fam.name}{{{prefix[c]}}} 0\n")
        for key, value in t.counts.items():
            found = by_key.get(key[0])
            if found is not None:
                extra = "".join(f',{label}="{v}"' for label, v in zip(found.labels, key[1:], strict=True))
                lines[found.key].append(f"{found.name}{{{prefix[c]}{extra}}} {value}\n")
    out: list[str] = []
    for fam in COUNTERS:
        out.append(f"# HELP {fam.name} {fam.help}\n# TYPE {fam.name} {fam.kind}\n")
        out.extend(lines[fam.key])
    gauges: tuple[tuple[str, str, Callable[[CommuneTotals], float]], ...] = (
        ("commune_dossiers_open", "Dossiers open (status 2, 4, 5, 6)", lambda t: t.get("open")),
        ("commune_dossiers_overdue", "Open dossiers past their due date", lambda t: t.overdue(now_s)),
        ("commune_last_event_timestamp_seconds", "Event time of the newest event seen from the commune",
         lambda t: t.last_event_us / 1e6),
    )
    for name, help_, get in gauges:
        out.append(f"# HELP {name} {help_}\n# TYPE {name} gauge\n")
        out.extend(f"{name}{{{prefix[c]}}} {get(t)}\n" for c, t in communes)
    rates = [(c, ratios(t)) for c, t in communes]
    for rate in ("on_time", "online", "paid_online", "digitised"):
        name = f"commune_dossiers_{rate}_ratio"
        out.append(f"# HELP {name} Live national service index rate: {rate.replace('_', ' ')} (0-1)\n"
                   f"# TYPE {name} gauge\n")
        for c, r in rates:
            text = _ratio(*r[rate])
            if text is not None:
                out.append(f"{name}{{{prefix[c]}}} {text}\n")
    for hist_name, hist_help, hist_key, bounds in HISTOGRAMS:
        _histogram(out, hist_name, hist_help, hist_key, bounds, communes)
    return "".join(out)


def _histogram(out: list[str], name: str, help_: str, key: str, bounds: tuple[float, ...],
               communes: list[tuple[str, CommuneTotals]]) -> None:
    by_province: dict[str, list[int]] = {}
    sums: dict[str, int] = {}
    for _, t in communes:
        counts = by_province.setdefault(t.province, [0] * (len(bounds) + 1))
        for i in range(len(bounds) + 1):
            counts[i] += t.counts.get((key, str(i)), 0)
        sums[t.province] = sums.get(t.province, 0) + t.counts.get((f"{key}_sum",), 0)
    out.append(f"# HELP {name} {help_}\n# TYPE {name} histogram\n")
    for province in sorted(by_province):
        running = 0
        for bound, n in zip((*(repr(float(b)) for b in bounds), "+Inf"), by_province[province], strict=True):
            running += n
            out.append(f'{name}_bucket{{province="{province}",le="{bound}"}} {running}\n')
        out.append(f'{name}_sum{{province="{province}"}} {sums[province]}\n')
        out.append(f'{name}_count{{province="{province}"}} {running}\n')
