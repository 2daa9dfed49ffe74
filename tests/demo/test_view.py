"""The demo view's pure core: Prometheus text in, figures and a rendered view (or one summary line) out."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from rich.console import Console

from services.demo.figures import Health, Scrape, commune_rates, figures, intake_totals, notification_totals, samples
from services.demo.view import render, summary

pytestmark = pytest.mark.unit


def exposition(records_in: int, notified: int) -> str:
    """Real exposition text with the services' metric names, as one scrape of intake, notify and metrics returns."""
    registry = CollectorRegistry()
    seen = Counter("commune_intake_records_in", "", ["family"], registry=registry)
    out = Counter("commune_intake_records_out", "", ["family"], registry=registry)
    rejected = Counter("commune_intake_records_rejected", "", ["family", "reason"], registry=registry)
    notes = Counter("notify_notifications", "", ["type", "channel", "outcome"], registry=registry)
    ratio = Gauge("commune_dossiers_on_time_ratio", "", ["province", "commune"], registry=registry)
    completed = Gauge("commune_dossiers_completed", "", ["province", "commune", "channel", "timeliness"],
                      registry=registry)
    seen.labels("dossier").inc(records_in)
    out.labels("dossier").inc(records_in - 5)
    rejected.labels("dossier", "schema_invalid").inc(3)
    rejected.labels("dossier", "unknown_commune").inc(2)
    seen.labels("announcement").inc(7)
    out.labels("announcement").inc(7)
    notes.labels("dossier.status-changed", "sms", "sent").inc(notified)
    notes.labels("dossier.received", "sms", "sent").inc(notified)
    notes.labels("dossier.status-changed", "webhook", "failed").inc(1)
    for commune, rate, done in (("06253", 0.5, 4), ("06256", 0.9, 10), ("06259", 1.0, 3), ("06262", 0.25, 8),
                                ("06265", 0.75, 4), ("06268", 0.8, 5), ("06271", 0.0, 0)):
        ratio.labels("20", commune).set(rate)
        completed.labels("20", commune, "online", "late").set(done)
    return generate_latest(registry).decode()


HEALTH = {"intake": Health("ready"), "notify": Health("not ready", "restoring the ledger"),
          "simulator": Health("running"), "gateway": Health("exited", "exit code 1")}


def scrape_at(at: float, records_in: int, notified: int) -> Scrape:
    found = samples(exposition(records_in, notified))
    return Scrape(at, intake_totals(found), notification_totals(found), commune_rates(found), HEALTH)


def text_of(renderable: object) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_totals_come_from_the_exposition() -> None:
    """Per family in / canonical / dead-lettered over reasons; notifications summed over event types."""
    s = scrape_at(0.0, 100, 10)
    assert s.families["dossier"] == (100, 95, 5) and s.families["announcement"] == (7, 7, 0)
    assert s.notifications == {("sms", "sent"): 20, ("webhook", "failed"): 1}


def test_rates_over_the_window_and_the_lowest_five_communes() -> None:
    """Rates are differences over the window; the five lowest on-time communes with completed dossiers, worst first."""
    f = figures(scrape_at(10.0, 100, 10), scrape_at(15.0, 148, 30))
    dossier = next(r for r in f.families if r.family == "dossier")
    assert (dossier.in_per_s, dossier.canonical_per_s, dossier.dead_per_s) == (9.6, 9.6, 0.0)
    assert {(n.channel, n.outcome, n.per_s) for n in f.notifications} == {("sms", "sent", 8.0),
                                                                          ("webhook", "failed", 0.0)}
    assert [c.commune for c in f.lowest_on_time] == ["06262", "06253", "06265", "06268", "06256"]


def test_the_view_shows_live_figures() -> None:
    """The rendered view carries the rates, the worst commune with its name, each process's state and the logs."""
    text = text_of(render(figures(scrape_at(10.0, 100, 10), scrape_at(15.0, 148, 30), clock="12:00:00",
                                  namespace="demo1", logs=".demo/logs")))
    assert "9.6/s" in text and "8.0/s" in text and "25%" in text and "06262" in text
    for line in ("intake", "notify", "gateway"):
        assert line in text
    assert "restoring the ledger" in text and "exit code 1" in text and ".demo/logs/<process>.log" in text
    assert "mobile-team" in text  # a family with no traffic yet still has its row


def test_the_first_view_has_no_rates_yet() -> None:
    """Before a second scrape there is no window: the view says so rather than showing a rate of zero as real."""
    f = figures(None, scrape_at(3.0, 100, 10))
    assert f.window_s == 0 and all(r.in_per_s == 0 for r in f.families)
    assert "rates after the next scrape" in text_of(render(f))


def test_summary_line() -> None:
    """Without a TTY one line says the rates, the notifications, the worst commune and who is not up."""
    line = summary(figures(scrape_at(10.0, 100, 10), scrape_at(15.0, 148, 30), clock="12:00:00"))
    assert "\n" not in line
    assert "in 9.6/s" in line and "sent=60" in line and "06262 25%" in line
    assert "up 2/4 (notify: not ready, gateway: exited)" in line


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=2, max_size=6))
def test_a_counter_reset_never_gives_a_negative_rate(values: list[int]) -> None:
    """A restarted service counts from zero again: rates stay >= 0 whatever the totals do between scrapes."""
    scrapes = [Scrape(float(i), {"dossier": (v, v, v)}, {("sms", "sent"): float(v)}) for i, v in enumerate(values)]
    for older, newer in itertools.pairwise(scrapes):
        f = figures(older, newer)
        assert all(r.in_per_s >= 0 and r.dead_per_s >= 0 for r in f.families)
        assert all(n.per_s >= 0 for n in f.notifications)
