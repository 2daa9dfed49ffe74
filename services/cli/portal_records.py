"""What `publish` tells before it sends portal-shape dossiers to a source's own topic: whether intake will take their
source as that source's.

On a topic bound to a registry entry (ADR 0018) intake dead-letters a record whose source the entry does not own
(`unauthorised_source`). A portal-shape record names its source in the `source` header (`--source`); without one,
intake takes it as the commune's portal sync (`portal.sync_source`), which few entries own: a source's `publish`
without `--source` exited 0 and every record became a dead letter (CLI trial).
"""

from __future__ import annotations

from pathlib import Path

from schemas.admin import commune_provinces
from schemas.events import Family
from services.intake import portal
from services.sources.registry import Source, load_registry
from services.sources.topics import entry_policy


def registry_entry(sources_file: Path, entry_id: str) -> Source | None:
    """The entry of the source registry file with this id; None if the file is not there (an installed package
    without `infra/`) or does not list it: then only intake can tell."""
    return load_registry(sources_file).by_id.get(entry_id) if sources_file.exists() else None


def unowned_source(entry: Source, commune: str | None, source: str | None) -> str | None:
    """Why intake would dead-letter portal-shape records published with `--commune commune` and `--source source` to
    `entry`'s own topic as unauthorised_source (`entry_policy`, intake's own rule: a source the entry owns, for a
    commune it covers), or None. The `--source` given is not repeated (the user's input); a record without a commune
    is dead-lettered for that first (`commune_problem`)."""
    if commune is None:
        return None
    padded = portal.commune_code(commune)
    refused = entry_policy(entry, portal.sync_source(padded) if source is None else source, Family.DOSSIER, padded)
    if refused is None:
        return None
    if refused.field != "source":  # the commune (or the family): the entry's message names the entry and the code
        return f"intake would dead-letter the records as unauthorised_source: {refused.message}"
    own = ", ".join(entry.sources)
    if source is not None:
        return (f"--source is not one of {entry.id}'s sources in the registry ({own}): intake would dead-letter the "
                "records as unauthorised_source")
    return (f"portal-shape records need --source, one of {entry.id}'s sources in the registry ({own}): without it "
            f"intake takes them as the commune's portal sync, {portal.sync_source(padded)}, which is not one of "
            "them, and dead-letters them as unauthorised_source")


def commune_problem(commune: str | None) -> str | None:
    """Why intake would dead-letter every portal-shape record published with `--commune commune` (from any
    principal, to any raw topic), or None: the shape carries its commune only in the `commune-code` header, so
    without one each is missing_commune_header, and with a code not on the official list unknown_commune. The code
    given is not repeated (the user's input)."""
    if commune is None:
        return ("portal-shape records need --commune, the commune's code (their `commune-code` header): without it "
                "intake dead-letters them as missing_commune_header")
    if portal.commune_code(commune) not in commune_provinces():
        return "--commune is not a commune code of the official list: intake would dead-letter the records as " \
               "unknown_commune"
    return None


def family_problem(entry: Source | None, family: Family) -> str | None:
    """Why `publish --family family` cannot go to `entry`'s own topics: the registry gives the entry no topic of that
    family (topics are made for the families it lists), or None. It failed as a refusal to describe the topic,
    with the hint to use the admin's credentials (walkthrough, 2026-12-05)."""
    if entry is None or family in entry.families:
        return None
    return (f"the registry entry {entry.id} publishes {', '.join(f.value for f in entry.families)} only, not "
            f"{family.value}: it has no {family.value} topic (ask the operators to add the family to the entry)")
