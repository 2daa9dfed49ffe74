"""Prometheus text exposition of the communes in the partitions this worker owns (`/metrics` serves it).

Built at scrape time from the owned partitions only, so a worker that loses a
partition stops exporting its communes at once, and the sum over workers is the
truth. Written by hand rather than through prometheus-client's generic
`generate_latest`, which needs ~0.4 s for the ~100k samples of 3,321 communes;
label values are official codes and fixed enums, so no escaping is needed.
Labels are `province`, `commune` and small enums: never personal data or dossier codes.
The commune totals are gauges (ADR 0029: a later event can lower them); the two histograms stay histograms,
Prometheus's text format having no gauge histogram: read their buckets as they are, not through `rate()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from operator import itemgetter

from schemas.admin import commune_provinces
from schemas.topics import PARTITIONS
from services.common.partitioner import partition_for
from services.metrics.aggregate import DELAY_BUCKETS_S, DURATION_BUCKETS_S, CommuneTotals
from services.metrics.partition import PartitionState


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    key: str  # first element of the CommuneTotals key; the rest are `labels`
    labels: tuple[str, ...] = ()


TOTALS: tuple[Family, ...] = (
    Family("commune_dossiers_received", "Dossiers received (any status except 1 and 3), by current channel",
           "received", ("channel",)),
    Family("commune_dossiers_completed", "Dossiers completed (status 9, 10), by current channel and timeliness",
           "completed", ("channel", "timeliness")),
    Family("commune_dossiers_paid_online", "Received dossiers with fees paid online", "paid_online"),
    Family("commune_dossiers_with_fees", "Received dossiers with a fee or charge over 0 VND", "with_fees"),
    Family("commune_dossiers_digitised", "Received dossiers with digitised components", "digitised"),
    Family("commune_mobile_team_visits", "Mobile-team visits completed", "visits"),
    Family("commune_mobile_team_households_reached", "Households visited by mobile teams, as last reported",
           "households"),
    Family("commune_mobile_team_people_assisted", "People assisted by mobile teams, as last reported", "people"),
    Family("commune_mobile_team_dossiers_assisted", "Dossiers submitted with mobile-team help, as last reported",
           "visit_dossiers"),
    Family("commune_mobile_team_accounts_activated", "VNeID level-2 accounts activated by mobile teams, as last "
           "reported", "accounts"),
    Family("commune_mobile_team_trainings", "Training sessions held", "trainings"),
    Family("commune_mobile_team_training_attendees", "Training attendees, as last reported", "attendees"),
    Family("commune_mobile_team_support_answered", "Support requests answered, by current channel", "support",
           ("channel",)),
    Family("commune_announcements_scheduled", "Loudspeaker announcements scheduled, by current category",
           "scheduled", ("category",)),
    Family("commune_broadcasts", "Loudspeaker cluster broadcasts ended, by category and latest outcome",
           "broadcast", ("category", "outcome")),
)
"""Every commune's totals, exported as gauges (ADR 0029): each is the sum over the entities' current states, so a
later event may move an entity from one label to another (a failed broadcast completed on a retry, a completion
reclassified) or lower a reported figure, and the total goes down. A counter must never go down: Prometheus reads
a decrease as a restart and `rate()`/`increase()` would count the whole total again."""
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
    received = completed = on_time = 0
    for k, v in t.counts.items():  # one pass: this runs for every commune at every scrape
        head = k[0]
        if head == "received":
            received += v
        elif head == "completed":
            completed += v
            if k[2] in ON_TIME:
                on_time += v
    return {
        "on_time": (on_time, completed),
        "online": (t.get("received", "online"), received),
        "paid_online": (t.get("paid_online"), t.get("with_fees")),
        "digitised": (t.get("digitised"), received),
    }


_Line = tuple[list[str], str, str]  # where a count's line goes, the text before the commune's labels, after them


def _line_of(key: tuple[str, ...], lines: dict[str, list[str]]) -> _Line | None:
    """How a count key is written: its family's line list, `name{` and `,extra labels} ` (None: not exported)."""
    fam = next((f for f in TOTALS if f.key == key[0]), None)
    if fam is None:
        return None
    extra = "".join(f',{label}="{v}"' for label, v in zip(fam.labels, key[1:], strict=True))
    return lines[fam.key], f"{fam.name}{{", f"{extra}}} "


@cache
def communes_of(partition: int, partitions: int = PARTITIONS) -> tuple[tuple[str, str], ...]:
    """(commune, province) of every commune of the administrative registry whose events go to `partition` (the
    canonical topics are keyed by commune code)."""
    return tuple((c, p) for c, p in sorted(commune_provinces().items()) if partition_for(c.encode(), partitions)
                 == partition)


def _heard(partitions: list[PartitionState]) -> list[str]:
    """`commune_heard` of every commune of the owned partitions: 1 once an event of it is held, 0 for one never
    heard from, so a commune whose software never sent anything shows (and the dashboards' variables list it)."""
    out = ["# HELP commune_heard 1 if the commune has sent an event, 0 if never (every commune of the owned "
           "partitions)\n# TYPE commune_heard gauge\n"]
    rows: dict[str, tuple[str, int]] = {}
    for part in partitions:
        for commune, province in communes_of(part.partition):
            rows[commune] = (province, 0)
        for commune, totals in part.communes.items():
            rows[commune] = (totals.province, 1)
    out.extend(f'commune_heard{{province="{province}",commune="{c}"}} {heard}\n'
               for c, (province, heard) in sorted(rows.items()))
    return out


def render(partitions: Iterable[PartitionState], now_s: float) -> str:
    owned = list(partitions)
    communes = sorted(((c, t) for p in owned for c, t in p.communes.items()), key=itemgetter(0))
    prefix = {c: f'province="{t.province}",commune="{c}"' for c, t in communes}
    lines: dict[str, list[str]] = {fam.key: [] for fam in TOTALS}
    # families without labels are written as 0 until they happen, so ratios are 0/0, not absent
    always = [((fam.key,), lines[fam.key], fam.name) for fam in TOTALS if not fam.labels]
    known: dict[tuple[str, ...], _Line | None] = {}  # a few dozen distinct keys, written ~100k times a scrape
    for c, t in communes:
        labels, counts = prefix[c], t.counts
        for key0, target0, name in always:
            if key0 not in counts:
                target0.append(f"{name}{{{labels}}} 0\n")
        for key, value in counts.items():
            line = known[key] if key in known else known.setdefault(key, _line_of(key, lines))
            if line is not None:
                target, head, tail = line
                target.append(f"{head}{labels}{tail}{value}\n")
    out: list[str] = []
    for fam in TOTALS:
        out.append(f"# HELP {fam.name} {fam.help}\n# TYPE {fam.name} gauge\n")
        out.extend(lines[fam.key])
    gauges: tuple[tuple[str, str, Callable[[CommuneTotals], float]], ...] = (
        ("commune_dossiers_open", "Dossiers open (status 2, 4, 5, 6)", lambda t: t.get("open")),
        ("commune_dossiers_overdue", "Open dossiers past their due day (Vietnam time)", lambda t: t.overdue(now_s)),
        ("commune_last_event_timestamp_seconds", "Event time of the newest event seen from the commune whose time is "
         "believed (at most 1 h ahead of when it was published)",
         lambda t: t.last_event_us / 1e6),
        ("commune_last_received_timestamp_seconds", "When the backbone received the newest event that changed the "
         "commune's figures (its canonical record's timestamp, whatever the event's own time)",
         lambda t: t.last_received_ms / 1e3),
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
    out.extend(_heard(owned))
    return "".join(out)


def _histogram(out: list[str], name: str, help_: str, key: str, bounds: tuple[float, ...],
               communes: list[tuple[str, CommuneTotals]]) -> None:
    by_province: dict[str, list[int]] = {}
    sums: dict[str, int] = {}
    keys = [(key, str(i)) for i in range(len(bounds) + 1)]
    sum_key = (f"{key}_sum",)
    for _, t in communes:
        counts = by_province.setdefault(t.province, [0] * (len(bounds) + 1))
        got = t.counts.get
        for i, k in enumerate(keys):
            counts[i] += got(k, 0)
        sums[t.province] = sums.get(t.province, 0) + got(sum_key, 0)
    out.append(f"# HELP {name} {help_}\n# TYPE {name} histogram\n")
    for province in sorted(by_province):
        running = 0
        for bound, n in zip((*(repr(float(b)) for b in bounds), "+Inf"), by_province[province], strict=True):
            running += n
            out.append(f'{name}_bucket{{province="{province}",le="{bound}"}} {running}\n')
        out.append(f'{name}_sum{{province="{province}"}} {sums[province]}\n')
        out.append(f'{name}_count{{province="{province}"}} {running}\n')
