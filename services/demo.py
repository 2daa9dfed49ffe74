"""`make demo`: the whole backbone on the local broker, fed by the simulator. Ctrl-C stops all.

Each entry below is one process; they share the environment (KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

PY = sys.executable

# (name, argv, extra environment, where to look)
PROCESSES: list[tuple[str, list[str], dict[str, str], str]] = [
    ("intake", [PY, "-m", "services.intake"], {}, "intake metrics: http://127.0.0.1:9101/metrics"),
    ("simulator", [PY, "-m", "services.simulator", "--rate", "50"], {}, "raw traffic: commune.raw.* (Lạng Sơn communes)"),
    ("notify-providers", [PY, "-m", "services.notify.fake_providers"], {}, "fake SMS/Zalo/webhook gateway: http://127.0.0.1:8025/stats (SMTP sink :8026)"),
    ("notify", [PY, "-m", "services.notify"], {"NOTIFY_DIRECTORY_FILE": "infra/notify/directory.example.toml",
                                               "NOTIFY_SUBSCRIBERS_FILE": "infra/notify/subscribers.example.toml"},
     "notify metrics: http://127.0.0.1:9102/metrics; outcomes: commune.notify.status"),
    ("gateway", [PY, "-m", "services.gateway"], {"GATEWAY_SECRETS_FILE": "infra/gateway-secrets.example.yaml"},
     "HTTP ingest: http://127.0.0.1:8080/docs (demo key in infra/gateway-secrets.example.yaml; docs/integrators.md)"),
    ("metrics", [PY, "-m", "services.metrics"], {},
     "indicators: http://127.0.0.1:9103/metrics; snapshots: commune.metrics.snapshots; dashboards: infra/grafana"),
]
if shutil.which("prometheus"):
    PROCESSES.append(("prometheus", ["prometheus", "--config.file=infra/prometheus/prometheus.yml",
                                     "--web.listen-address=127.0.0.1:9090", "--storage.tsdb.path=.state/prometheus",
                                     "--log.level=warn"], {},
                      "Prometheus: http://127.0.0.1:9090 (rules: infra/prometheus/rules, alerts at /alerts)"))


def main() -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP": os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")}
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    for name, argv, extra, _ in PROCESSES:
        procs.append((name, subprocess.Popen(argv, env={**env, **extra})))
    print("\ncommune-bus demo is running. Where to look:")
    for _, _, _, where in PROCESSES:
        print(f"  - {where}")
    print("  - canonical events: .venv/bin/commune-bus tail commune.events.dossier  (or kcat -C -b 127.0.0.1:9092 -t commune.events.dossier)")
    print("Ctrl-C stops everything (the broker keeps running: `make down`).\n")
    try:
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        for name, p in procs:
            if p.poll() is not None:
                print(f"demo: {name} exited with {p.returncode}; stopping the rest", file=sys.stderr)
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
