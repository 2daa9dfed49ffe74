"""`python -m services.demo` as a process: a busy port stops it before anything starts; a live run shows live
figures, and SIGHUP (a closed terminal) leaves no process of its tree behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from services.demo.figures import Scrape, figures
from services.demo.processes import plan
from services.demo.scrape import scrape
from services.demo.settings import DemoSettings
from services.demo.view import render
from tests.demo import proctree
from tests.kafkatools import ROOT, free_port
from tests.waiting import eventually

PORTS = ("intake_port", "notify_port", "notify_deadlines_port", "metrics_port", "gateway_port", "gateway_metrics_port",
         "providers_port", "smtp_port", "prometheus_port")


def demo_settings(tmp_path: Path, namespace: str) -> DemoSettings:
    ports = {name: free_port() for name in PORTS}
    return DemoSettings(namespace=namespace, run_dir=tmp_path / "run", state_dir=tmp_path / "state",
                        summary_every_s=1, refresh_s=0.5, **ports)


def demo_env(settings: DemoSettings, **more: str) -> dict[str, str]:
    own = {f"DEMO_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None}
    return {**os.environ, **own, **more}


@pytest.mark.unit
def test_a_busy_port_stops_the_demo_before_anything_starts(tmp_path: Path) -> None:
    """One line names the port, the process meant for it, who holds it and the setting to change; nothing starts."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = demo_settings(tmp_path, "busy").model_copy(update={"gateway_port": port})
        result = subprocess.run([sys.executable, "-m", "services.demo"], cwd=ROOT, env=demo_env(settings),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"demo: port {port} (gateway: gateway API) is in use by pid {os.getpid()} (")
    assert lines[0].endswith("DEMO_GATEWAY_PORT")
    assert not (tmp_path / "run").exists() and result.stdout == ""


def text_of(renderable: object) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.kafka
def test_live_view_then_sighup_leaves_no_process(kafka_topics: str, unique: str, tmp_path: Path) -> None:
    """A real demo: every process gets ready, the view renders its live figures, and SIGHUP stops its whole tree."""
    settings = demo_settings(tmp_path, f"demo{unique}")
    children = plan(settings)
    out = tmp_path / "demo.out"
    with open(out, "wb") as handle:
        demo = subprocess.Popen([sys.executable, "-m", "services.demo"], cwd=ROOT, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=demo_env(settings, KAFKA_BOOTSTRAP=kafka_topics))
    seen: set[proctree.Proc] = set()
    try:
        def all_up_with_traffic() -> Scrape:
            assert demo.poll() is None, out.read_text()[-3000:]
            s = scrape(children, {}, time.monotonic())
            assert all(h.state in ("ready", "running") for h in s.health.values()), s.health
            assert s.families.get("dossier", (0, 0, 0))[1] > 0 and any(c.completed for c in s.communes)
            assert sum(s.notifications.values()) > 0
            return s

        first = eventually(all_up_with_traffic, timeout=150, interval=1, what="every process ready, with traffic")

        def moving() -> str:
            later = scrape(children, {}, time.monotonic())
            f = figures(first, later, logs=str(settings.log_dir))
            dossier = next(r for r in f.families if r.family == "dossier")
            assert dossier.in_per_s > 0 and f.lowest_on_time
            text = text_of(render(f))
            assert f"{dossier.in_per_s:,.1f}/s" in text and f.lowest_on_time[0].commune in text
            return text

        text = eventually(moving, timeout=30, interval=1, what="dossier records per second above zero")
        for child in children:
            assert child.name in text
        assert "ready" in text and f"{settings.log_dir}/<process>.log" in text

        seen = proctree.tree(demo.pid)
        assert len(seen) >= len(children) + 1, seen  # the demo, its children, and notify's deadline tracker
        groups = {p.group for p in seen}
        demo.send_signal(signal.SIGHUP)
        eventually(lambda: demo.poll() is not None, timeout=60, what="the demo exits after SIGHUP")
        assert demo.returncode == 0, out.read_text()[-3000:]
        assert proctree.alive(seen) == set()
        assert proctree.in_groups(groups) == set()
        assert "stopping" in out.read_text() and "(SIGHUP)" in out.read_text()
        assert {p.name for p in (settings.log_dir).iterdir()} == {f"{c.name}.log" for c in children}
    finally:
        if demo.poll() is None:
            demo.kill()
        for p in proctree.alive(seen):
            os.kill(p.pid, signal.SIGKILL)
