"""`python -m services.gateway`: serve the ingest gateway (uvicorn) until SIGTERM/SIGINT."""

from __future__ import annotations

import uvicorn

from services.common.logging import configure
from services.gateway.app import create_app
from services.gateway.publisher import KafkaPublisher
from services.gateway.settings import GatewaySettings, load_credentials
from services.sources.registry import load_registry


def build(settings: GatewaySettings) -> object:
    prefix = f"{settings.namespace}." if settings.namespace else ""
    publisher = KafkaPublisher(settings.bootstrap, f"{prefix}commune-bus.gateway.{settings.instance_id}",
                               settings.kafka_timeout_s)
    return create_app(settings, load_registry(settings.sources_file), load_credentials(settings.secrets_file), publisher)


def main() -> None:
    settings = GatewaySettings()
    configure(settings.log_level)
    uvicorn.run(build(settings), host=settings.host, port=settings.port, log_level="warning",  # type: ignore[arg-type]
                access_log=False)


if __name__ == "__main__":
    main()
