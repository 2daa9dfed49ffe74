"""The source registry (`infra/sources.yaml`) and the one rule that reads it.

A source system is identified on Kafka by the CloudEvents `source` attribute
(`ce_source` header in binary mode, `"source"` in structured JSON) and, for the
portal dossier shape, by a `source` record header. An entry lists the source
URIs it owns (exact, or a prefix ending in `*`), the event families it may
publish and the communes it may publish for (by commune and/or province code,
`"*"` for all). Credentials are not here: see `services.gateway.settings`.
The same file lists the downstream applications that subscribe (`subscribers`): the ACLs give each a principal
that reads the published topics only (`services.common.acls`).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.admin import commune_provinces
from schemas.deadletter import Reason, Rejection
from schemas.events import Family
from services.common.yaml_files import problem_at

ANY = "*"


class Source(BaseModel):
    """One source system."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Credential id")
    sources: tuple[str, ...] = Field(min_length=1, description="CloudEvents source URIs; a trailing * is a prefix")
    families: tuple[Family, ...] = Field(min_length=1)
    communes: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()

    def owns(self, source: str) -> bool:
        return any(source.startswith(p[:-1]) if p.endswith(ANY) else source == p for p in self.sources)

    def covers(self, commune: str) -> bool:
        if ANY in self.communes or ANY in self.provinces or commune in self.communes:
            return True
        return commune_provinces().get(commune) in self.provinces

    @property
    def canonical_source(self) -> str:
        """The source URI stamped on records this system sends without one (portal shape)."""
        return self.sources[0].rstrip(ANY).rstrip("/") or self.sources[0]


class Subscriber(BaseModel):
    """One downstream application reading the published topics (the canonical events, notification statuses,
    commune snapshots) with principal `subscriber-<id>` and consumer groups `commune-bus.subscriber.<id>.<any>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$",
                    description="Principal `subscriber-<id>`; its groups begin `commune-bus.subscriber.<id>.`")


class SourceRegistry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: tuple[Source, ...] = ()
    subscribers: tuple[Subscriber, ...] = ()

    @cached_property
    def by_id(self) -> dict[str, Source]:
        return {s.id: s for s in self.sources}

    def owners(self, source: str) -> list[Source]:
        return [s for s in self.sources if s.owns(source)]


class RegistryFileError(ValueError):
    """A source registry file that cannot be read or is not a registry: the file, the place and why in one line
    (pydantic's errors without their input), never a traceback."""


def load_registry(path: str | Path) -> SourceRegistry:
    """Read and validate the registry file (YAML or JSON); raises on any error so a worker never starts open: an
    `OSError` for a file not there (named by the caller's handler), `RegistryFileError` for anything else (a file
    cut short, not UTF-8, an entry unlike a source: each was a traceback of the CLI and of the gateway's start)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RegistryFileError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise RegistryFileError(f"{path}: not valid YAML{problem_at(exc)}") from None
    try:
        return SourceRegistry.model_validate(loaded or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}"
                             for e in exc.errors(include_input=False, include_url=False)[:3])
        raise RegistryFileError(f"{path}: not a source registry: {problems}") from None


def is_allowed(registry: SourceRegistry, source: str, family: Family | str, commune: str) -> Rejection | None:
    """None if some entry owning `source` may publish `family` for `commune`, else why not."""
    family = Family(family)
    owners = registry.owners(source)
    if not owners:
        return Rejection(reason=Reason.UNAUTHORISED_SOURCE, field="source",
                         message="source is not in the source registry")
    if not any(family in s.families for s in owners):
        return Rejection(
            reason=Reason.UNAUTHORISED_SOURCE, field="type", message=f"source may not publish {family.value} events"
        )
    if not any(family in s.families and s.covers(commune) for s in owners):
        return Rejection(
            reason=Reason.UNAUTHORISED_SOURCE, field="commune", message=f"source may not publish for commune {commune}"
        )
    return None
