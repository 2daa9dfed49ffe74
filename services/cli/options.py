"""Options shared by the commands: broker address and topic namespace."""

from __future__ import annotations

from typing import Annotated

import typer

Bootstrap = Annotated[str, typer.Option("--bootstrap", "-b", envvar="KAFKA_BOOTSTRAP", help="Kafka bootstrap servers")]
Namespace = Annotated[str, typer.Option("--namespace", envvar="COMMUNE_BUS_NAMESPACE",
                                        help="Topic prefix (tests, staging); empty in production")]
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def topic_name(name: str, namespace: str) -> str:
    return f"{namespace}.{name}" if namespace and not name.startswith(namespace + ".") else name
