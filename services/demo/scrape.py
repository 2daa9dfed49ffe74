"""One scrape of the running demo: each process's /readyz, and intake's, notify's and metrics' /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from services.demo.figures import (
    Health,
    Scrape,
    commune_rates,
    intake_totals,
    notification_totals,
    samples,
)
from services.demo.processes import Child

FIGURES_FROM = ("intake", "notify", "metrics")


def fetch(url: str, timeout_s: float) -> tuple[int, str] | None:
    """(HTTP status, body), or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError):
        return None


def readiness(child: Child, returncode: int | None, timeout_s: float) -> Health:
    if returncode is not None:
        return Health("exited", f"exit code {returncode}")
    if child.probe is None:
        return Health("running")
    answer = fetch(child.probe + child.ready_path, timeout_s)
    if answer is None:
        return Health("no answer", "starting, or stuck")
    status, body = answer
    if status == 200:
        return Health("ready")
    try:
        detail = json.loads(body).get("detail") or ""
    except (ValueError, AttributeError):
        detail = body.strip()[:60]
    return Health("not ready", str(detail)[:60])


def scrape(children: Sequence[Child], returncodes: Mapping[str, int | None], at: float,
           timeout_s: float = 1.0) -> Scrape:
    found = []
    for child in children:
        if child.name in FIGURES_FROM and child.probe is not None and returncodes.get(child.name) is None:
            answer = fetch(child.probe + "/metrics", timeout_s)
            if answer is not None and answer[0] == 200:
                found += samples(answer[1])
    health = {c.name: readiness(c, returncodes.get(c.name), timeout_s) for c in children}
    return Scrape(at, intake_totals(found), notification_totals(found), commune_rates(found), health)
