"""Per-commune snapshot events built from a commune's totals (pure: the clock is a parameter)."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.snapshot import CommuneIndicators, CommuneSnapshot
from services.metrics.aggregate import CommuneTotals
from services.metrics.exposition import ratios

SOURCE = "/services/metrics"


def indicators(totals: CommuneTotals, now: datetime) -> CommuneIndicators:
    c = totals.counts
    by_channel: dict[str, int] = {}
    by_timeliness: dict[str, int] = {}
    for key, n in c.items():
        if key[0] == "received":
            by_channel[key[1]] = by_channel.get(key[1], 0) + n
        elif key[0] == "completed":
            by_timeliness[key[2]] = by_timeliness.get(key[2], 0) + n
    rate = {name: (num / den if den else None) for name, (num, den) in ratios(totals).items()}
    broadcasts = {"completed": 0, "failed": 0}
    for key, n in c.items():
        if key[0] == "broadcast":
            broadcasts[key[2]] += n
    return CommuneIndicators(
        taken_at=now, received=sum(by_channel.values()), received_by_channel=by_channel,
        completed=sum(by_timeliness.values()), completed_early=by_timeliness.get("early", 0),
        completed_on_time=by_timeliness.get("on_time", 0), completed_late=by_timeliness.get("late", 0),
        open=totals.get("open"), overdue=totals.overdue(now.timestamp()),
        paid_online=totals.get("paid_online"), with_fees=totals.get("with_fees"), digitised=totals.get("digitised"),
        on_time_rate=rate["on_time"], online_rate=rate["online"], paid_online_rate=rate["paid_online"],
        digitised_rate=rate["digitised"],
        mobile_team_visits=totals.get("visits"), households_reached=totals.get("households"),
        people_assisted=totals.get("people"), dossiers_assisted=totals.get("visit_dossiers"),
        accounts_activated=totals.get("accounts"),
        announcements_scheduled=sum(n for k, n in c.items() if k[0] == "scheduled"),
        broadcasts_completed=broadcasts["completed"], broadcasts_failed=broadcasts["failed"],
        last_event_at=datetime.fromtimestamp(totals.last_event_us / 1e6, UTC) if totals.last_event_us else None,
    )


def snapshot(commune: str, totals: CommuneTotals, now: datetime) -> CommuneSnapshot:
    stamp = now.strftime("%Y%m%dT%H%M%S")
    return CommuneSnapshot(
        id=f"snapshot-{commune}-{stamp}", source=SOURCE, time=now, subject=commune, commune=commune,
        province=totals.province, data=indicators(totals, now),
    )
