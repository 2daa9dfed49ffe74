"""Options shared by the commands: the broker (with the rest of the `KAFKA_*` connection) and the namespace."""

from __future__ import annotations

from typing import Annotated

import typer

from schemas.topics import by_name, namespaced
from services.common.settings import KafkaConnection

Bootstrap = Annotated[str, typer.Option("--bootstrap", "-b", envvar="KAFKA_BOOTSTRAP", help="Kafka bootstrap servers")]
Namespace = Annotated[str, typer.Option("--namespace", envvar="COMMUNE_BUS_NAMESPACE",
                                        help="Topic prefix (tests, staging); empty in production")]
DEFAULT_BOOTSTRAP: str = KafkaConnection.model_fields["bootstrap"].default
ShowPersonalData = Annotated[bool, typer.Option(
    "--show-personal-data", help="Show applicants' names, CCCD, phones, e-mails and addresses in clear, and "
    "values that are not JSON (default: masked, and withheld)")]


def connection(bootstrap: str) -> KafkaConnection:
    """`--bootstrap` over the rest of the connection (TLS, SASL) from `KAFKA_*`, as every service reads it."""
    return KafkaConnection(bootstrap=bootstrap)


def resolve_topic(name: str, namespace: str) -> str:
    """A registry topic name is taken inside the namespace; any other name (e.g. already namespaced) as given."""
    try:
        by_name(name)
    except KeyError:
        return name
    return namespaced(name, namespace)
