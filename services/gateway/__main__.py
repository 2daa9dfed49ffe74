"""`python -m services.gateway`: serve the ingest gateway until SIGTERM/SIGINT/SIGHUP.

One run of the service runtime: the HTTP server (uvicorn: the API, `/metrics`,
`/healthz`, `/readyz`) and the broker watch behind `/readyz`, both supervised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from schemas.topics import TransactionalId, transactional_id
from services.common import runtime
from services.common.health import Health
from services.gateway.app import create_app
from services.gateway.publisher import KafkaPublisher
from services.gateway.readiness import watch_broker
from services.gateway.settings import GatewaySettings, load_credentials
from services.sources.registry import load_registry

SERVICE = "gateway"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service runtime owns SIGTERM, SIGINT and SIGHUP."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def worker(settings: GatewaySettings, app: FastAPI, publisher: KafkaPublisher) -> runtime.Worker:
    async def run(supervisor: runtime.Supervisor) -> None:
        server = _Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                        access_log=False))
        serving = supervisor.spawn("http", server.serve())
        supervisor.spawn("broker-watch", watch_broker(publisher, supervisor.health, supervisor.stop))
        stopping = supervisor.spawn("stop", supervisor.stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            raise RuntimeError("the HTTP server ended on its own")
        server.should_exit = True
        await serving

    return run


def main() -> None:
    settings = GatewaySettings()
    health = Health(SERVICE)
    publisher = KafkaPublisher(settings, transactional_id(TransactionalId.GATEWAY, settings.namespace,
                                                          settings.instance_id), settings.kafka_timeout_s)
    app = create_app(settings, load_registry(settings.sources_file), load_credentials(settings.secrets_file),
                     publisher, health)
    runtime.main(SERVICE, settings, worker(settings, app, publisher), health=health)


if __name__ == "__main__":
    main()
