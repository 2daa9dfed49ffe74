"""Signed-looking uploads from someone with no credential (a signing source's id, whatever signature): their bodies are
read before their HMAC can be checked, yet they hold little of the gateway's memory and leave its connections to
integrators (the gateway's server in a process of its own, on uvloop as in production, its RSS measured)."""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from services.gateway import __main__ as gateway_main
from services.gateway.settings import GatewaySettings
from tests.gateway.asgi import API_KEY
from tests.gateway.standalone import READY
from tests.kafkatools import free_port, stop_service
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
UPLOAD = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Source-Id: province\r\nX-Signature: t=1764000000,v1="
          + b"0" * 64 + b"\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n" + b" " * MiB)
"""1 MiB of a declared 10 MiB under a signature that cannot verify, `t` at the standalone gateway's clock."""


@contextlib.contextmanager
def standalone(files: Path, **fields: object) -> Iterator[tuple[int, int]]:
    """`tests.gateway.standalone` with these settings: its pid and port."""
    port, log = free_port(), files / "standalone.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.gateway.standalone", str(port),
                                 *(f"{name}={value}" for name, value in fields.items())],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while READY not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.05)
        yield proc.pid, port
    finally:
        stop_service(proc)


def kilobytes(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` figure (VmHWM: the peak resident set so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def answered(conns: list[socket.socket], wait_s: float) -> list[bytes]:
    """The status lines that have come back on `conns` within `wait_s` (a connection answered is read no more)."""
    lines: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + wait_s
    while (waiting := [c for c in conns if c not in lines]) and (left := deadline - time.monotonic()) > 0:
        for conn in select.select(waiting, [], [], left)[0]:
            try:
                lines[conn] = conn.recv(65536).split(b"\r\n")[0]
            except OSError:
                lines[conn] = b""
    return list(lines.values())


def test_unverified_uploads_hold_little_memory_and_leave_integrators_room(tmp_path: Path) -> None:
    """110 uploads, each 1 MiB of a declared 10 MiB under a signature that cannot verify, then silent, against 100
    connections at most and GATEWAY_UNVERIFIED_BODY_BYTES of 24 MiB (one address standing for the many an attacker
    has: GATEWAY_FAILED_SIGNATURES_BURST=1000). The gateway's peak RSS grows by less than 40 MB; the uploads past
    the budget are answered 503 `busy` and closed; an integrator's request still gets its 202. Before: each upload
    kept its first 1 MiB in memory (about +120 MB here), the 100 connections stayed busy for minutes and the
    integrator was answered 503 `too_many_connections` (audit: 516 uploads took the gateway from 92 to 759 MB)."""
    event = orjson.dumps(canonical_dossier("past-the-flood"))
    with standalone(tmp_path, max_connections=100, unverified_body_bytes=24 * MiB,
                    failed_signatures_burst=1000) as (pid, port):
        before = kilobytes(pid, "VmHWM")
        uploads = []
        for _ in range(110):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            with contextlib.suppress(OSError):  # refused, and closed, before it was all sent
                conn.sendall(UPLOAD)
            uploads.append(conn)
        integrator = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        integrator.request("POST", "/v1/events", event, {"X-Api-Key": API_KEY, "Content-Type": "application/json"})
        status = integrator.getresponse().status
        busy = answered(uploads, wait_s=5).count(b"HTTP/1.1 503 Service Unavailable")
        grown = kilobytes(pid, "VmHWM") - before
        for conn in uploads:
            conn.close()
    assert status == 202
    assert grown < 40 * 1024, f"the peak RSS grew by {grown // 1024} MB"
    assert busy >= 55, f"{busy} of 110 uploads answered 503"


def test_the_file_limit_counts_a_spilled_body_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body spills to a temporary file once the bodies being read fill their memory budget, so each connection may
    hold a file besides its socket: an open-file limit of 750 for 512 connections is warned of at start (it must be
    twice the cap plus 100). Before: only below 612."""
    monkeypatch.setattr(gateway_main.resource, "getrlimit", lambda _: (750, 1_048_576))
    with capture_logs() as logs:
        gateway_main.check_file_limit(GatewaySettings(max_connections=512))
    assert [e["event"] for e in logs] == ["gateway.file_limit_low"]
