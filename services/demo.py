"""`make demo`: the whole backbone on the local broker, fed by the simulator. Ctrl-C stops all.

Each entry below is one process; they share the environment (`KAFKA_*`). Every
service's HTTP port (/metrics, /healthz, /readyz) is set here, on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

PY = sys.executable
INTAKE_PORT, NOTIFY_PORT, METRICS_PORT, GATEWAY_PORT = 9101, 9102, 9103, 8080


def _probes(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics (/healthz, /readyz)"


# (name, argv, extra environment, where to look)
PROCESSES: list[tuple[str, list[str], dict[str, str], str]] = [
    ("intake", [PY, "-m", "services.intake"], {"INTAKE_HTTP_PORT": str(INTAKE_PORT)},
     f"intake: {_probes(INTAKE_PORT)}"),
    ("simulator", [PY, "-m", "services.simulator", "--rate", "50"], {},
     "raw traffic: commune.raw.* (Lạng Sơn communes)"),
    ("notify-providers", [PY, "-m", "services.notify.fake_providers"], {},
     "fake SMS/Zalo/webhook gateway: http://127.0.0.1:8025/stats (SMTP sink :8026)"),
    ("notify", [PY, "-m", "services.notify"], {"NOTIFY_HTTP_PORT": str(NOTIFY_PORT),
                                               "NOTIFY_DIRECTORY_FILE": "infra/notify/directory.example.toml",
                                               "NOTIFY_SUBSCRIBERS_FILE": "infra/notify/subscribers.example.toml"},
     f"notify: {_probes(NOTIFY_PORT)}; outcomes: commune.notify.status"),
    ("gateway", [PY, "-m", "services.gateway"], {"GATEWAY_PORT": str(GATEWAY_PORT),
                                                 "GATEWAY_SECRETS_FILE": "infra/gateway-secrets.example.yaml"},
     f"HTTP ingest: http://127.0.0.1:{GATEWAY_PORT}/docs (demo key in infra/gateway-secrets.example.yaml; "
     f"docs/integrators.md), {_probes(GATEWAY_PORT)}"),
    ("metrics", [PY, "-m", "services.metrics"], {"METRICS_HTTP_PORT": str(METRICS_PORT)},
     f"indicators: {_probes(METRICS_PORT)}; snapshots: commune.metrics.snapshots; dashboards: infra/grafana"),
]
if shutil.which("prometheus"):
    PROCESSES.append(("prometheus", ["prometheus", "--config.file=infra/prometheus/prometheus.yml",
                                     "--web.listen-address=127.0.0.1:9090", "--storage.tsdb.path=.state/prometheus",
                                     "--log.level=warn"], {},
                      "Prometheus: http://127.0.0.1:9090 (rules: infra/prometheus/rules, alerts at /alerts)"))


def say(text: str, err: bool = False) -> None:
    """The demo's own output (it is a terminal program, not a service: no log events)."""
    (sys.stderr if err else sys.stdout).write(text + "\n")


def main() -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP": os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")}
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    for name, argv, extra, _ in PROCESSES:
        procs.append((name, subprocess.Popen(argv, env={**env, **extra})))
    say("\ncommune-bus demo is running. Where to look:")
    for _, _, _, where in PROCESSES:
        say(f"  - {where}")
    say("  - canonical events: .venv/bin/commune-bus tail commune.events.dossier"
        "  (or kcat -C -b 127.0.0.1:9092 -t commune.events.dossier)")
    say("Ctrl-C stops everything (the broker keeps running: `make down`).\n")
    try:
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        for name, p in procs:
            if p.poll() is not None:
                say(f"demo: {name} exited with {p.returncode}; stopping the rest", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
