"""Grafana dashboards as code: `python infra/grafana/dashboards.py` rewrites infra/grafana/dashboards/*.json.

Four dashboards: province overview (communes ranked by indicator), commune
drill-down (template variables province -> commune), mobile teams and
broadcasts, pipeline health. Every query reads the metrics service's series or
the recording rules of infra/prometheus/rules; tests/metrics/test_prometheus_e2e.py
evaluates each one against a live Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
P = '{province="$province"}'
C = '{commune="$commune"}'
RATIOS = (("on_time", "On time or early"), ("progress", "Progress (completed or open, on time or early)"),
          ("online", "Submitted online"), ("paid_online", "Paid online"), ("digitised", "Digitised"))
"""The national-service-index rates since the beginning (the totals are totals to date, ADR 0029): panels say
"all time". The on-time rate (completions alone) also over the past 7 days, as CommuneOnTimeRateLow judges it; the
index's processing progress counts the open dossiers not yet overdue too (DOMAIN.md)."""
WEEK = "past 7 days"


def panel(title: str, expr: str, kind: str = "timeseries", *, instant: bool = False, legend: str = "",
          unit: str = "short", w: int = 12, h: int = 8, more: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """One panel; `more` adds further (expr, legend) queries."""
    targets = [{"refId": chr(ord("A") + i), "expr": e, "instant": instant, "range": not instant, "legendFormat": lg,
                "datasource": DATASOURCE} for i, (e, lg) in enumerate(((expr, legend), *more))]
    return {"type": kind, "title": title, "datasource": DATASOURCE, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "gridPos": {"w": w, "h": h}}


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "refresh": 2, "sort": 1,
            "query": {"query": query, "refId": f"{name}-var"}, "includeAll": False, "multi": False}


# every commune of the registry, heard from or not (`commune_heard`): a commune that never sent an event is listed
PROVINCE_VAR = variable("province", "label_values(commune_heard, province)", "Province")
COMMUNE_VAR = variable("commune", 'label_values(commune_heard{province="$province"}, commune)', "Commune")


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict[str, Any]:
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["id"] = i
        p["gridPos"] |= {"x": x, "y": y}
        x, row_h = x + w, max(row_h, h)
    return {"uid": uid, "title": title, "tags": ["commune-bus"], "timezone": "Asia/Ho_Chi_Minh",
            "schemaVersion": 39, "version": 1, "editable": False, "refresh": "30s",
            "time": {"from": "now-24h", "to": "now"}, "templating": {"list": variables}, "panels": panels}


def province_overview() -> dict[str, Any]:
    stats = [panel(f"{label}, all time", f"province:commune_dossiers_{rate}:ratio{P}", "stat", unit="percentunit",
                   w=6, h=4) for rate, label in RATIOS]
    # the on-time ranking as the alert sees it: the past 7 days, communes with 20 completed in them or more
    on_time_week = (f"bottomk(20, commune:commune_dossiers_on_time:ratio7d{P} and on (province, commune) "
                    f"commune:commune_dossiers_completed:delta7d{P} >= 20)")
    ranked = [panel(f"Communes ranked: on time or early, {WEEK}, 20 completed or more (lowest 20)", on_time_week,
                    "bargauge", instant=True, legend="{{commune}}", unit="percentunit", w=6, h=10),
              *(panel(f"Communes ranked: {label.lower()}, all time (lowest 20)",
                      f"bottomk(20, commune:commune_dossiers_{rate}:ratio{P})", "bargauge", instant=True,
                      legend="{{commune}}", unit="percentunit", w=6, h=10) for rate, label in RATIOS[1:])]
    return dashboard("commune-bus-province", "Province overview", [
        *stats,
        panel(f"On time or early, {WEEK}", f"province:commune_dossiers_on_time:ratio7d{P}", "stat",
              unit="percentunit", w=6, h=4),
        panel(f"Completed, {WEEK}", f"province:commune_dossiers_completed:delta7d{P}", "stat", w=6, h=4),
        panel("Open dossiers", f"province:commune_dossiers_open:sum{P}", "stat", w=6, h=4),
        panel("Overdue dossiers", f"province:commune_dossiers_overdue:sum{P}", "stat", w=6, h=4),
        panel("Received (total)", f"province:commune_dossiers_received:sum{P}", "stat", w=6, h=4),
        panel("Completed (total)", f"province:commune_dossiers_completed:sum{P}", "stat", w=6, h=4),
        *ranked,
        panel("Communes ranked: overdue backlog (top 20)",
              f"topk(20, sum by (commune) (commune_dossiers_overdue{P}))", "bargauge", instant=True,
              legend="{{commune}}", w=12, h=10),
        # a gauge (ADR 0029): the sum now less the sum an hour ago, not rate(), nor delta() of each series, which
        # lost a partition's dossiers when it moved to another worker (its series ends, another `instance` begins)
        # and a channel's first hour (audit)
        panel("Received in the past hour, by channel",
              f"sum by (channel) (commune_dossiers_received{P}) - (sum by (channel) (commune_dossiers_received{P} "
              f"offset 1h) or 0 * sum by (channel) (commune_dossiers_received{P}))",
              legend="{{channel}}", w=12, h=10),
        panel("Completed to date, by timeliness", f"sum by (timeliness) (commune_dossiers_completed{P})",
              legend="{{timeliness}}", w=12),
        panel("Processing duration p90", f"province:commune_dossier_processing_duration_seconds:p90{P}", unit="s",
              legend="p90", w=12),
        panel("Communes heard from", f"sum(commune_heard{P})", "stat", w=6, h=4),
        panel("Communes never heard from", f"count(commune_heard{P} == 0) or vector(0)", "stat", w=6, h=4),
        panel("Communes, never heard from first (0 = no event ever)", f"sort(commune_heard{P})", "table",
              instant=True, legend="{{commune}}", w=12, h=10),
    ], [PROVINCE_VAR])


def commune_drilldown() -> dict[str, Any]:
    stats = [panel(f"{label}, all time", f"commune:commune_dossiers_{rate}:ratio{C}", "stat", unit="percentunit",
                   w=6, h=4) for rate, label in RATIOS]
    return dashboard("commune-bus-commune", "Commune drill-down", [
        *stats,
        panel(f"On time or early, {WEEK}", f"commune:commune_dossiers_on_time:ratio7d{C}", "stat",
              unit="percentunit", w=6, h=4),
        panel(f"Completed, {WEEK}", f"commune:commune_dossiers_completed:delta7d{C}", "stat", w=6, h=4),
        panel("Open", f"sum(commune_dossiers_open{C})", "stat", w=6, h=4),
        panel("Overdue", f"sum(commune_dossiers_overdue{C})", "stat", w=6, h=4),
        panel("Received", f"sum(commune_dossiers_received{C})", "stat", w=6, h=4),
        # what CommuneSilent judges: when the backbone last received a change from the commune
        panel("Since the last event received", f"time() - max(commune_last_received_timestamp_seconds{C})", "stat",
              unit="s", w=6, h=4),
        # the sender's clock: far above the one before it, the commune sends old events (a backlog)
        panel("Since the newest event's own time", f"time() - max(commune_last_event_timestamp_seconds{C})", "stat",
              unit="s", w=6, h=4),
        panel("Received by channel", f"sum by (channel) (commune_dossiers_received{C})", legend="{{channel}}"),
        panel("Completed to date, by timeliness", f"sum by (timeliness) (commune_dossiers_completed{C})",
              legend="{{timeliness}}"),
        panel("Open and overdue", f"sum(commune_dossiers_open{C})", legend="open",
              more=((f"sum(commune_dossiers_overdue{C})", "overdue"),)),
        panel("Mobile-team reach", f"sum(commune_mobile_team_households_reached{C})", legend="households"),
    ], [PROVINCE_VAR, COMMUNE_VAR])


def mobile_and_broadcasts() -> dict[str, Any]:
    return dashboard("commune-bus-mobile", "Mobile teams and broadcasts", [
        panel("Visits completed", f"sum(commune_mobile_team_visits{P})", "stat", w=6, h=4),
        panel("Households reached", f"sum(commune_mobile_team_households_reached{P})", "stat", w=6, h=4),
        panel("Dossiers assisted", f"sum(commune_mobile_team_dossiers_assisted{P})", "stat", w=6, h=4),
        panel("VNeID accounts activated", f"sum(commune_mobile_team_accounts_activated{P})", "stat", w=6, h=4),
        panel("Communes ranked: households reached (top 20)",
              f"topk(20, sum by (commune) (commune_mobile_team_households_reached{P}))", "bargauge",
              instant=True, legend="{{commune}}"),
        panel("Training attendees and support answers", f"sum(commune_mobile_team_training_attendees{P})",
              legend="training attendees",
              more=((f"sum by (channel) (commune_mobile_team_support_answered{P})", "support: {{channel}}"),)),
        panel("Announcements scheduled by category",
              f"sum by (category) (commune_announcements_scheduled{P})", legend="{{category}}"),
        panel("Broadcasts by category and outcome",
              f"sum by (category, outcome) (commune_broadcasts{P})", legend="{{category}} {{outcome}}"),
        panel("Schedule to broadcast delay p90", f"province:commune_broadcast_delay_seconds:p90{P}", unit="s",
              legend="p90", w=24),
    ], [PROVINCE_VAR])


def pipeline_health() -> dict[str, Any]:
    return dashboard("commune-bus-pipeline", "Pipeline health", [
        panel("Intake records in per second", "job:commune_intake_records_in:rate1m", legend="{{job}}", unit="ops"),
        panel("Metrics events per second", "job:commune_metrics_events:rate1m", legend="{{job}}", unit="ops"),
        panel("Dead letters per second by reason",
              "sum by (family, reason) (rate(commune_intake_records_rejected_total[$__rate_interval]))",
              legend="{{family}} {{reason}}", unit="ops"),
        panel("Consumer lag by service and topic", "sum by (job, topic) (commune_consumer_lag)",
              legend="{{job}} {{topic}}"),
        panel("Intake latency p95",
              "histogram_quantile(0.95, sum by (le) "
              "(rate(commune_intake_processing_seconds_bucket[$__rate_interval])))",
              unit="s", legend="p95"),
        panel("Partitions owned per metrics worker", "sum by (instance) (commune_metrics_owned_partitions)",
              legend="{{instance}}"),
        panel("Gateway answers per second by status",
              "sum by (status) (rate(commune_gateway_answers_total[$__rate_interval]))", legend="{{status}}",
              unit="reqps"),
        panel("Gateway refusals per second by reason (before the body was read)",
              "sum by (reason) (rate(commune_gateway_refused_total[$__rate_interval]))", legend="{{reason}}",
              unit="reqps"),
        panel("Gateway connections open (cap: GATEWAY_MAX_CONNECTIONS)",
              "sum by (instance) (commune_gateway_connections_open)", legend="{{instance}}"),
        panel("Targets up", 'up{job=~"intake|notify|notify-deadlines|metrics|gateway"}', "stat", legend="{{job}}",
              w=24, h=4),
    ], [])


DASHBOARDS = {"province-overview": province_overview, "commune-drilldown": commune_drilldown,
              "mobile-teams-broadcasts": mobile_and_broadcasts, "pipeline-health": pipeline_health}


def render_all() -> dict[str, str]:
    return {f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for filename, text in render_all().items():
        (OUT / filename).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / filename}")
