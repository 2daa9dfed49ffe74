"""Options shared by the commands: the broker (with the rest of the `KAFKA_*` connection) and the namespace."""

from __future__ import annotations

import asyncio
import difflib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer

from schemas.times import to_utc
from schemas.topics import TOPICS, by_name, namespaced
from services.cli.errors import BrokerSilent, CliError
from services.common.clients import connection_options
from services.common.probe import addresses, answer
from services.common.settings import KafkaConnection

Bootstrap = Annotated[str, typer.Option("--bootstrap", "-b", envvar="KAFKA_BOOTSTRAP", help="Kafka bootstrap servers")]
Namespace = Annotated[str, typer.Option("--namespace", envvar="COMMUNE_BUS_NAMESPACE",
                                        help="Topic prefix (tests, staging); empty in production")]
DEFAULT_BOOTSTRAP: str = KafkaConnection.model_fields["bootstrap"].default
REPLY_WAIT_S = 10.0
"""How long a command waits for a bootstrap address to answer before it says none did. A port where something
accepts connections and says nothing (a frozen broker, another program, packets dropped) held every command for the
client's request timeout, 40 s without a word, before 'Unable to bootstrap'; a refused connection is told at once."""
ShowPersonalData = Annotated[bool, typer.Option(
    "--show-personal-data", help="Show applicants' names, CCCD, phones, e-mails and addresses as the records hold "
    "them, and values that are not JSON (default: masked, and withheld); sealed ones stay sealed (ADR 0015)")]


_AGO = re.compile(r"([0-9]{1,5})([dhm])")
_UNIT = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
MOMENT_FORMS = ("30d, 12h or 90m (days, hours, minutes ago), or a date or time such as 2026-11-01 or "
                "2026-11-01T08:00 (Vietnam time unless it names its offset)")


def moment(text: str, now: datetime | None = None, *, day_end: bool = False) -> datetime:
    """The instant (UTC) a `--since` / `--until` text names: `MOMENT_FORMS`; ValueError naming them for anything else.
    Before 1970 is 1970 (Kafka's time index takes -1 and -2 for "latest" and "earliest"). With `day_end` (`--until`, "at
    or before"), a date alone is the last instant of that day in Vietnam: its first left the whole day out, and
    `--since D --until D` matched nothing (time audit, 2026-12-06)."""
    text = text.strip()
    now = now or datetime.now(UTC)
    if ago := _AGO.fullmatch(text):
        return max(datetime.fromtimestamp(0, UTC), now - int(ago[1]) * _UNIT[ago[2]])
    try:  # naive = Vietnam time, as everywhere in the CLI; an instant datetime can't hold: refused
        at = to_utc(datetime.fromisoformat(text)) if len(text) <= 40 else None
        if at is not None and day_end and _is_date(text):  # its end, then held to 1970 (1969-12-31 is 1970's start)
            at += timedelta(days=1, microseconds=-1)
    except (ValueError, OverflowError):
        at = None
    if at is None:
        raise ValueError(f"give {MOMENT_FORMS}")
    return max(datetime.fromtimestamp(0, UTC), at)


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def connection(bootstrap: str) -> KafkaConnection:
    """`--bootstrap` over the rest of the connection (TLS, SASL) from `KAFKA_*`, as every service reads it; BrokerSilent
    when no bootstrap address answers and one of them stays silent (`REPLY_WAIT_S`)."""
    conn = KafkaConnection(bootstrap=bootstrap)
    tls = connection_options(conn).get("ssl_context")
    pairs = addresses(conn.bootstrap)

    async def answers() -> set[bool | None]:
        """What the addresses said, up to the first that replies: one broker frozen among three (the cluster's
        bootstrap) does not hold a command while another answers."""
        said: set[bool | None] = set()
        for done in asyncio.as_completed([answer(host, port, tls, REPLY_WAIT_S) for host, port in pairs]):
            said.add(await done)
            if True in said:
                break
        return said

    said = asyncio.run(answers()) if pairs else set()
    if False in said and True not in said:
        raise BrokerSilent(bootstrap, REPLY_WAIT_S)
    return conn


def misspelt(name: str, namespace: str) -> CliError | None:
    """`name` is no topic of the registry but close to one: what was most likely meant. A principal without an ACL
    for a name is refused whether the topic exists or not, and the rights hint sent an operator who had mistyped
    `commune.events.dossier` to the admin (walkthrough)."""
    known = [namespaced(t.name, namespace) for t in TOPICS]
    close = [] if name in known else difflib.get_close_matches(name, known, n=1, cutoff=0.85)
    return CliError(f"{name}: not visible to this principal, and no topic of the registry is so named: did you mean "
                    f"{close[0]}?") if close else None


def resolve_topic(name: str, namespace: str) -> str:
    """A registry topic name is taken inside the namespace; any other name (e.g. already namespaced) as given."""
    try:
        by_name(name)
    except KeyError:
        return name
    return namespaced(name, namespace)


Since = Annotated[str | None, typer.Option("--since", help=f"Records timestamped from then on: {MOMENT_FORMS}")]


def since_option(text: str | None) -> int | None:
    """Epoch milliseconds of a `--since` text (`Since`), None without one; a usage error naming the forms else."""
    try:
        return None if text is None else int(moment(text).timestamp() * 1000)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
