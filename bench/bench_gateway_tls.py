"""What the gateway's own TLS layer costs against uvicorn's, side by side in one run (no broker needed).

The gateway wraps each HTTPS connection in asyncio's TLS protocol itself (`handshakes.guarded_tls`), so that an
unfinished handshake counts against the connection cap and has a deadline; uvicorn's `ssl_certfile` leaves the
handshake to the loop (uvloop's TLS). Each server runs in this process on uvloop with the gateway's
`server_config` (the same guarded HTTP protocol either way) and a bare `GET /ping`; the client is httpx in a
process of its own: BENCH_TLS_REQUESTS (default 1,500) requests on one kept-alive connection, then a fifth as many
on a fresh connection each (a full handshake each). Alternated BENCH_TLS_ROUNDS times (default 2), best of each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import uvicorn
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from services.gateway.__main__ import _Server, server_config
from services.gateway.connections import ConnectionLimits, guarded
from services.gateway.settings import GatewaySettings

REQUESTS = int(os.environ.get("BENCH_TLS_REQUESTS", "1500"))
ROUNDS = int(os.environ.get("BENCH_TLS_ROUNDS", "2"))
CLIENT = r'''
import httpx, ssl, sys, time
url, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
trust = ssl.create_default_context(cafile=ca)
with httpx.Client(verify=trust) as http:
    for _ in range(50):
        http.get(url)
    started = time.perf_counter()
    for _ in range(n):
        assert http.get(url).status_code == 200
    kept = n / (time.perf_counter() - started)
started = time.perf_counter()
for _ in range(n // 5):
    with httpx.Client(verify=trust) as http:
        assert http.get(url).status_code == 200
print(f"{kept:.0f} {(n // 5) / (time.perf_counter() - started):.0f}")
'''


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "commune-bus bench")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = folder / "bench.crt", folder / "bench.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def config(kind: str, settings: GatewaySettings, app: FastAPI) -> uvicorn.Config:
    if kind == "gateway":
        return server_config(settings, app)
    assert settings.tls_certfile is not None and settings.tls_keyfile is not None
    limits = ConnectionLimits(settings.header_timeout_s, settings.body_timeout_s, settings.body_min_bytes_per_s,
                              settings.max_connections, settings.send_timeout_s)
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                          http=guarded(limits), ssl_certfile=str(settings.tls_certfile),
                          ssl_keyfile=str(settings.tls_keyfile))


async def one(kind: str, certfile: Path, keyfile: Path, port: int) -> tuple[float, float]:
    """(requests/s kept alive, requests/s on fresh connections) against a server with `kind`'s TLS layer."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    settings = GatewaySettings(port=port, tls_certfile=certfile, tls_keyfile=keyfile)
    server = _Server(config(kind, settings, app))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, f"https://127.0.0.1:{port}/ping", str(certfile), str(REQUESTS),
            stdout=subprocess.PIPE)
        out, _ = await client.communicate()
        kept, fresh = (float(x) for x in out.split())
        return kept, fresh
    finally:
        server.should_exit = True
        await serving


async def run() -> None:
    with tempfile.TemporaryDirectory() as folder:
        certfile, keyfile = certificate(Path(folder))
        best: dict[str, tuple[float, float]] = {}
        for n in range(ROUNDS):
            for kind in ("uvicorn", "gateway"):
                kept, fresh = await one(kind, certfile, keyfile, free_port())
                print(f"  round {n + 1}, {kind:8s}: kept alive {kept:,.0f} requests/s, a fresh connection each "
                      f"{fresh:,.0f} requests/s", flush=True)
                old = best.get(kind, (0.0, 0.0))
                best[kind] = (max(old[0], kept), max(old[1], fresh))
    (uk, uf), (gk, gf) = best["uvicorn"], best["gateway"]
    print(f"gateway's TLS layer / uvicorn's (best of {ROUNDS}): kept alive {gk / uk:.0%}, fresh connections "
          f"{gf / uf:.0%}")


def main() -> None:
    print(f"HTTPS on loopback, {REQUESTS:,} requests kept alive and {REQUESTS // 5:,} on fresh connections, "
          f"{ROUNDS} rounds:", flush=True)
    uvloop.run(run())


if __name__ == "__main__":
    main()
