"""`python -m services.gateway`: serve the ingest gateway until SIGTERM/SIGINT/SIGHUP.

One run of the service runtime: the HTTP server (uvicorn, HTTPS when a certificate is set: the API,
`/healthz`, `/readyz`), the runtime's own `/metrics` server on `GATEWAY_HTTP_PORT`, the claims reader
(Idempotency-Keys and nonces, shared by every instance through Kafka) and the broker watch behind `/readyz`,
all supervised. The transactional id is
named by `GATEWAY_INSTANCE_ID`, so a restarted instance fences its predecessor; a fenced one exits.
"""

from __future__ import annotations

from services.common import early_stop

if __name__ == "__main__":  # run as the service (not imported by a test): before the slow imports below
    early_stop.hold()  # a stop signal while they run (about a second) is noted, not lost

import asyncio
import logging
import os
import resource
import socket
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
import uvicorn
from fastapi import FastAPI

from schemas.topics import GATEWAY_CLAIMS, TransactionalId, scoped, transactional_id
from services.common import closing, runtime
from services.common.health import Health
from services.common.refused import BAD_SETTINGS, settings_checked
from services.common.sparse import SparseRecords
from services.gateway.app import create_app
from services.gateway.chunks import MAX_HEAD_BYTES
from services.gateway.claimlog import KafkaClaims
from services.gateway.connections import ConnectionLimits, guarded
from services.gateway.handshakes import abort_handshakes, guarded_tls
from services.gateway.keys import KeysFileError, load_credentials
from services.gateway.publisher import STOP_TIMEOUT_S, KafkaPublisher
from services.gateway.readiness import watch_broker
from services.gateway.settings import GatewaySettings
from services.privacy.erase import erasure_topics
from services.sources.registry import RegistryFileError, load_registry

SERVICE = "gateway"
FILES_BESIDES_CONNECTIONS = 100
"""Open files the gateway needs besides its HTTP connections: Kafka clients' sockets, the listener, logs, a margin."""
log = structlog.get_logger("gateway")
UVICORN_LOGGED = SparseRecords()
"""uvicorn's warnings, one per kind every `sparse.EVERY_S` at most: any peer can cause one per connection."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service runtime owns SIGTERM, SIGINT and SIGHUP."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        abort_handshakes(self.config.http_protocol_class)
        await super().shutdown(sockets)


def server_config(settings: GatewaySettings, app: FastAPI) -> uvicorn.Config:
    """HTTP on host:port, or HTTPS with the settings' certificate and key; headers of 16 KiB at most, and slow or
    excess connections closed (`connections`, over TLS `handshakes`); uvicorn's log records rendered as the service's
    own."""
    limits = ConnectionLimits(settings.header_timeout_s, settings.body_timeout_s, settings.body_min_bytes_per_s,
                              settings.max_connections, settings.send_timeout_s)
    # over TLS the listening socket stays plain TCP and each connection gets its TLS layer from `guarded_tls`: so its
    # handshake counts against the cap and has a deadline (uvicorn's `ssl_certfile` would leave both to asyncio)
    protocol = guarded(limits) if settings.tls_certfile is None else guarded_tls(limits, tls_context(settings))
    # log_config=None: uvicorn installs no handlers of its own (its default prints tracebacks with the exception's
    # message); its loggers propagate to the root's, which `services.common.logging.configure` renders
    logging.getLogger("uvicorn.error").addFilter(UVICORN_LOGGED)  # (once: a filter already there is not added again)
    if os.environ.get("FORWARDED_ALLOW_IPS"):  # uvicorn's own variable, which an earlier text advised
        log.warning("gateway.forwarded_allow_ips_ignored", advice="X-Forwarded-For is read only from the proxies "
                    "GATEWAY_TRUSTED_PROXIES names: move FORWARDED_ALLOW_IPS's addresses there")
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                          log_config=None,
                          http=protocol, timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type]
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                          # X-Forwarded-* only from the proxies named: uvicorn's default trusts them from 127.0.0.1
                          # and ::1 (any local process could name any address, escaping the failed signatures' limit)
                          proxy_headers=bool(settings.trusted_proxies),
                          forwarded_allow_ips=settings.trusted_proxies or None,
                          timeout_graceful_shutdown=settings.stop_requests_s)


def tls_context(settings: GatewaySettings) -> ssl.SSLContext:
    """The server's TLS: its certificate and key, TLS 1.2 or later, Python's defaults otherwise (not
    `create_default_context`: it would write the session secrets to any file SSLKEYLOGFILE names)."""
    assert settings.tls_certfile is not None and settings.tls_keyfile is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_certfile, settings.tls_keyfile)
    return context


def check_file_limit(settings: GatewaySettings) -> None:
    """Warn when the open-file limit is too low for `max_connections`, each with a body's temporary file (a body
    spills to one once the bodies being read fill `bodies.MEMORY_BYTES`), plus the Kafka clients: the cap would never
    be reached, accepting or spilling would fail instead (and the Kafka clients with it)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 2 * settings.max_connections + FILES_BESIDES_CONNECTIONS:
        log.warning("gateway.file_limit_low", open_files=soft, max_connections=settings.max_connections,
                    advice="raise the open-file limit (ulimit -n) or lower GATEWAY_MAX_CONNECTIONS")


def worker(settings: GatewaySettings, app: FastAPI, publisher: KafkaPublisher, claims: KafkaClaims) -> runtime.Worker:
    async def run(supervisor: runtime.Supervisor) -> None:
        check_file_limit(settings)
        supervisor.spawn("claims", claims.run(supervisor.health))
        server = _Server(server_config(settings, app))
        serving = supervisor.spawn("http", _served(server))
        supervisor.spawn("broker-watch", watch_broker(publisher, supervisor.health, supervisor.stop,
                                                      waiting=claims.waiting))
        stopping = supervisor.spawn("stop", _after_stop(supervisor.stop, settings.stop_delay()))
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            raise RuntimeError("the HTTP server ended on its own")
        server.should_exit = True
        await serving

    return run


async def _served(server: _Server) -> None:
    """`server.serve()`, and its shutdown however the serve ends. Cancelled (a sibling task's error ends the run, and
    the runtime starts the next), uvicorn does not shut down: its listening socket stayed open and its lifespan ran
    on (the publisher never closed), so the next run's server could not bind, and uvicorn's `sys.exit(3)` ended the
    process without a `service.crashed` (review, 2026-12-07). A cancel within its start (uvicorn binds, then says
    `started` with no wait between) is not covered: a window of one loop turn."""
    try:
        await server.serve()
    except asyncio.CancelledError:
        server.should_exit = True
        if server.started:
            await server.shutdown()  # bounded: `stop_requests_s` for the requests under way, then the publisher's close
        raise


async def _after_stop(stop: asyncio.Event, delay_s: float) -> None:
    """Return `delay_s` after the stop was asked for. The runtime has turned `/readyz` to 503 by then; the API keeps
    answering meanwhile, so the requests a load balancer sends before it sees the 503 are served, not refused at a
    closed port (without the delay the port closed at once and /readyz said 200 until then)."""
    await stop.wait()
    await asyncio.sleep(delay_s)


def stop_budget_s(settings: GatewaySettings) -> float:
    """The longest SIGTERM can take in a broker outage (infra/compose.yaml's `stop_grace_period` is at least this):
    the gateway keeps serving `stop_delay_s`, requests under way then get `stop_requests_s`, then the publisher's
    producer stops (`publisher.STOP_TIMEOUT_S`, and as long again for producers dropped before, stopping on their
    own), then the claims reader's consumer and producer, one after the other (`closing.CLOSE_TIMEOUT_S` each); at
    most the runtime's `stop_deadline_s`."""
    return runtime.bounded_stop_s(settings, settings.stop_delay() + settings.stop_requests_s + 2 * STOP_TIMEOUT_S
                                  + 2 * closing.CLOSE_TIMEOUT_S)


def main() -> None:
    with settings_checked(SERVICE):
        settings = GatewaySettings()
    health = Health(SERVICE)
    publisher = KafkaPublisher(settings, transactional_id(TransactionalId.GATEWAY, settings.namespace,
                                                          settings.instance_id), settings.kafka_timeout_s,
                               settings.transaction_timeout_ms, committed=health.committed)
    claims = KafkaClaims(settings, scoped(GATEWAY_CLAIMS, settings.namespace),
                         client_id=f"commune-bus-gateway-{settings.instance_id}", timeout_s=settings.kafka_timeout_s,
                         answer_bytes=settings.idempotency_answer_bytes, checked=erasure_topics(settings.namespace))
    try:
        app = create_app(settings, load_registry(settings.sources_file), load_credentials(settings.secrets_file),
                         publisher, health, claims=claims)
    except (KeysFileError, RegistryFileError) as exc:  # never start open: one line naming the entry, never a key
        sys.stderr.write(f"{SERVICE}: {exc}\n")
        raise SystemExit(BAD_SETTINGS) from None
    runtime.main(SERVICE, settings, worker(settings, app, publisher, claims), health=health)


if __name__ == "__main__":
    main()
