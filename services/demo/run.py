"""`make demo`: start every process, show the live view (or a summary line without a TTY), stop all on a signal.

Ctrl-C, SIGTERM and SIGHUP (a closed terminal) all end the demo the same way: every
process it started is stopped (`supervise.stop`). A port already in use stops the
demo before anything starts, with one line per port naming what holds it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.live import Live

from services.common.refused import settings_checked
from services.demo import ports, principals, processes, supervise
from services.demo.figures import Scrape, figures
from services.demo.scrape import scrape
from services.demo.settings import DemoSettings
from services.demo.view import render, summary
from services.privacy import keys as privacy_keys
from services.privacy.settings import PrivacySettings

WINDOW_S = 5.0  # rates over about the last five seconds: smoother than one scrape to the next


def say(text: str) -> None:
    """The demo's own lines (it is a terminal program, not a service: no log events). A closed terminal is fine."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def busy_ports(s: DemoSettings, children: list[processes.Child]) -> list[str]:
    """One line per port of the demo already in use: the port, what the demo meant it for, who holds it."""
    wanted = {port: f"{c.name}: {what}" for c in children for port, what in c.ports.items()}
    setting = {v: f"DEMO_{k.upper()}" for k, v in s.model_dump().items() if k.endswith("_port")}
    return [f"demo: port {port} ({wanted[port]}) is in use by {who}; stop it or choose another port with "
            f"{setting[port]}" for port, who in ports.busy(wanted).items()]


def main() -> None:
    with settings_checked("demo"):
        settings = DemoSettings()
        configured = PrivacySettings().configured
    s = settings.model_copy(update={"run_dir": settings.run_dir.resolve(), "state_dir": settings.state_dir.resolve(),
                                    "secrets_dir": settings.secrets_dir.resolve()})
    children = processes.plan(s)
    if problems := busy_ports(s, children):
        sys.stderr.write("\n".join(problems) + "\n")
        raise SystemExit(2)
    processes.write_configs(s)

    stopping = threading.Event()
    reason: list[str] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        reason.append(signal.Signals(signum).name)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    env = {**os.environ, "KAFKA_BOOTSTRAP": os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")}
    keys: dict[str, str] = {}
    if not configured:  # a local key pair of its own, made once: intake seals, notify opens
        keys = privacy_keys.ensure(s.run_dir / "keys")
        env |= keys
    try:  # on a secure broker, each process as its own principal (not as the admin running the demo)
        children = [replace(c, env=principals.environment(c.name, env, s.secrets_dir, s.namespace) | c.env)
                    for c in children]
    except principals.MissingCredentials as exc:
        raise SystemExit(str(exc)) from None
    running = supervise.start(children, {}, s.log_dir, processes.ROOT)
    say("commune-bus demo is running. Where to look:")
    for child in children:
        say(f"  - {child.where}")
    if principals.secure(env) and not s.namespace:  # the CLI in another shell: the operator's credentials first
        say(f"  - the CLI, as the operator: set -a; . {_shown(s.secrets_dir)}/operator.env; set +a")
    if keys:  # dlq list/replay open sealed dead letters with the key store: the demo's own keys
        say("    with the demo's keys (dlq list, dlq replay): export "
            + " ".join(f"{name}={_shown(Path(path))}" for name, path in sorted(keys.items())))
    say("  - canonical events: .venv/bin/commune-bus tail commune.events.dossier"
        + (f" --namespace {s.namespace}" if s.namespace else ""))
    say(f"  - logs of every process: {_shown(s.log_dir)}/<process>.log")
    failed = ""
    try:
        failed = watch(s, running, stopping)
    finally:
        say(f"demo: stopping {len(running)} processes ({reason[0] if reason else failed or 'done'})")
        killed = supervise.stop(running, s.stop_timeout_s)
        say("demo: every process stopped" + (f" ({', '.join(killed)} needed SIGKILL)" if killed else ""))
    if failed:
        raise SystemExit(1)


def watch(s: DemoSettings, running: list[supervise.Running], stopping: threading.Event) -> str:
    """Scrape and show until a signal, or until a process exits by itself (its name and log are returned)."""
    window: deque[Scrape] = deque()
    tty = sys.stdout.isatty()
    console = Console()
    last_line = 0.0
    with Live(console=console, auto_refresh=False, transient=False) if tty else contextlib.nullcontext() as live:
        while not stopping.is_set():
            codes = {r.child.name: r.process.poll() for r in running}
            now = time.monotonic()
            window.append(scrape([r.child for r in running], codes, now))
            while len(window) > 2 and now - window[1].at >= WINDOW_S:
                window.popleft()
            shown = figures(window[0] if len(window) > 1 else None, window[-1], clock=time.strftime("%H:%M:%S"),
                            namespace=s.namespace, logs=_shown(s.log_dir))
            try:
                if live is not None:
                    live.update(render(shown), refresh=True)
                elif now - last_line >= s.summary_every_s:
                    last_line = now
                    say(summary(shown))
            except OSError:  # the terminal went away: SIGHUP follows, or is here already
                stopping.set()
            if exited := [r for r in running if codes[r.child.name] is not None]:
                return f"{exited[0].child.name} exited with {codes[exited[0].child.name]}; see {_shown(exited[0].log)}"
            stopping.wait(s.refresh_s)
    return ""
