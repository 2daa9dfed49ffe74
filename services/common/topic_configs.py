"""An existing topic's config next to the registry's: what differs, what a service must not start on, and the whole
config an alteration sends. Pure: `admin` reads and alters the configs on the broker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.topics import Kind, TopicSpec

DYNAMIC_TOPIC_CONFIG = 1
"""DescribeConfigs v1+ `config_source` of a key set on the topic itself (by the registry, or by hand)."""


@dataclass(frozen=True)
class Described:
    """One topic's config as DescribeConfigs returned it: every key's value, and the keys set on the topic itself
    (a value None: the broker withheld it, a sensitive key)."""

    values: Mapping[str, str | None]
    own: Mapping[str, str | None]


def described(entries: Iterable[Sequence[Any]], version: int) -> Described:
    """A topic's `config_entries` of a DescribeConfigs response of `version`: (name, value, read_only, v0 is_default
    or v1+ config_source, ...). v0 says only "not the default", which also holds for a broker's static setting."""
    rows = list(entries)
    own = [e for e in rows if (not e[3] if version == 0 else e[3] == DYNAMIC_TOPIC_CONFIG)]
    return Described({e[0]: e[1] for e in rows}, {e[0]: e[1] for e in own})


@dataclass(frozen=True)
class Drift:
    """A registry key an existing topic holds another value of (`actual` None: the broker reported no value)."""

    topic: str
    key: str
    actual: str | None
    wanted: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.key} is {self.actual}, the registry says {self.wanted}"


def normalised(value: str | None) -> str | None:
    """A config value as compared: a list (`compact,delete`) in any order is the same list."""
    return None if value is None else ",".join(sorted(part.strip() for part in value.split(",")))


def drifts(spec: TopicSpec, values: Mapping[str, str | None]) -> list[Drift]:
    """Each registry key of `spec` whose value on the broker (`values`, its topic's described config) differs."""
    return [Drift(spec.name, key, values.get(key), wanted) for key, wanted in spec.config.items()
            if normalised(values.get(key)) != normalised(wanted)]


def danger(drift: Drift, kind: Kind) -> str | None:
    """Why a service must not start on `drift` of a topic of `kind`, or None: a warning is enough.

    A topic the registry compacts (a changelog, the ledger, the key store, the replay log) that is not compacted
    deletes its records after `retention.ms`, and a restore then silently misses them. A `max.message.bytes` below
    the registry's refuses a record the registry allows, run after run: on a topic our services write in a
    transaction (intake's dead letters, its de-duplication changelog) that transaction aborts; on notify's ledger the
    idempotent producer can write that partition no more (out-of-order sequence) and the run ends. The raw topics are
    the exception, their writers are the sources, who are answered the refusal. Other drifts (a retention, a segment)
    change how long records stay, not whether a service works: they are warned about and counted.
    """
    uncompacted = drift.key == "cleanup.policy" and "compact" in _parts(drift.wanted) - _parts(drift.actual)
    if uncompacted and kind is not Kind.SNAPSHOT:  # snapshots are a published stream: nothing is restored from it
        return "a state topic not compacted loses its records after its retention: a restore misses them"
    if drift.key == "max.message.bytes" and kind is not Kind.RAW and _number(drift.actual) < int(drift.wanted):
        return "a record the registry allows is refused, run after run"
    return None


def overlaid(spec: TopicSpec, own: Mapping[str, str]) -> dict[str, str]:
    """The whole config an AlterConfigs of `spec`'s topic sends: the keys set on the topic (by hand, or by an older
    registry) with the registry's over them. AlterConfigs replaces a topic's whole dynamic config: a key left out
    goes back to the broker's default."""
    return {**own, **spec.config}


def _parts(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",")}


def _number(value: str | None) -> int:
    """A described number; one the broker did not report, or not a number, counts as none (0)."""
    return int(value) if value is not None and value.lstrip("-").isdigit() else 0
