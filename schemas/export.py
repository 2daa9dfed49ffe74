"""`python -m schemas.export` (`make schemas`): JSON Schema files of every canonical event type.

One file per CloudEvents `type`, describing the structured CloudEvents form
(the whole `Event` incl. `data`), plus the dead-letter header contract. Output
is deterministic (sorted keys, two-space indent, trailing newline) so the files
can be committed and diffed. A committed schema is a published contract: the
export refuses to overwrite it with a backward-incompatible one (bump the type
version instead), and `--check` only reports drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from schemas.compat import incompatibilities
from schemas.deadletter import HEADER_NOTES, DeadLetterContext, Header, Reason
from schemas.envelope import Event
from schemas.events import EVENT_TYPES, FAMILY_OF_TYPE
from schemas.lookup import DERIVED_ID_PATTERN, LOOKUP_PATTERN, TRACE_ID_PATTERN
from schemas.personal import ERASED_EVENT_TYPE, SEALED_HEADERS, ApplicantErased
from schemas.topics import CANONICAL, DLQ_INTAKE, PRIVACY_ERASURES, RAW

SCHEMA_DIR = Path(__file__).resolve().parent / "jsonschema"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:commune-bus:schema:"
DEADLETTER_FILE = "commune.dlq.headers.json"
ALWAYS_PRESENT = ("specversion", "type")
"""CloudEvents' required attributes that the models default (an input may leave `specversion` out): every canonical
event carries them, so its schema requires them; without `type` intake cannot even tell the schema (audit
2026-12-06: a record without `type` passed the schema, and intake dead-lettered it as `missing_field type`)."""


def event_schema(type_name: str, model: type[Event]) -> dict[str, Any]:
    """The canonical event of `type_name` as subscribers read it (structured form): what intake publishes, not every
    input it takes (times without an offset, the portal's compact times, no `specversion`: docs/integrators.md)."""
    family = FAMILY_OF_TYPE[type_name]
    schema = model.model_json_schema(mode="validation")
    required = {*schema["required"], *ALWAYS_PRESENT}
    schema.update(
        {
            "required": [name for name in model.model_fields if name in required],
            "$schema": DRAFT,
            "$id": ID_PREFIX + type_name,
            "x-cloudevents-type": type_name,
            "x-raw-topic": RAW[family].name,
            "x-canonical-topic": CANONICAL[family].name,
            "x-kafka-key": "commune code, 5 digits",
        }
    )
    return schema


def deadletter_schema() -> dict[str, Any]:
    """The `dlq.*` headers of a dead letter, as a map of header name to UTF-8 string value."""
    field_header = {name: Header[name.upper()].value for name in DeadLetterContext.model_fields}
    properties: dict[str, Any] = {
        Header.REASON.value: {"type": "string", "enum": [r.value for r in Reason]},
        Header.FIELD.value: {"type": "string", "description": "Dotted path of the offending field, or empty"},
        Header.MESSAGE.value: {"type": "string", "description": "Why; names the field, never echoes personal data"},
        Header.SOURCE_TOPIC.value: {"type": "string", "minLength": 1},
        Header.SOURCE_PARTITION.value: {"type": "string", "pattern": r"^\d+$"},
        Header.SOURCE_OFFSET.value: {"type": "string", "pattern": r"^\d+$"},
        Header.REJECTED_AT.value: {"type": "string", "description": "RFC 3339 time of the rejection"},
        # described, not asserted (as the lookup names below): another value was a string allowed here before
        Header.SOURCE_WRITTEN_AT.value: {"type": "string",
                                         "description": f"{HEADER_NOTES[Header.SOURCE_WRITTEN_AT]} Shape: ^\\d+$"},
        # no pattern: `^\d+$` refused what `dlq replay` writes, `<partition>:<offset>` (review)
        Header.REPLAYED.value: {"type": "string", "description": f"{HEADER_NOTES[Header.REPLAYED]} Shape: ^\\d+:\\d+$"},
        # shapes described, not asserted: the headers were already strings of any value here (additionalProperties),
        # and a pattern added to a published property is a breaking change (`schemas.compat`)
        Header.LOOKUP_ID.value: {"type": "string", "description": f"{HEADER_NOTES[Header.LOOKUP_ID]} Shape: "
                                 f"{LOOKUP_PATTERN}, or intake's own id of a portal payload, {DERIVED_ID_PATTERN}"},
        **{h.value: {"type": "string", "description": f"{HEADER_NOTES[h]} Shape: {LOOKUP_PATTERN}"}
           for h in (Header.LOOKUP_SUBJECT, Header.LOOKUP_DOSSIER)},
        Header.LOOKUP_TRACE.value: {"type": "string",
                                    "description": f"{HEADER_NOTES[Header.LOOKUP_TRACE]} Shape: {TRACE_ID_PATTERN}"},
        Header.PROBLEMS.value: {"type": "string", "description": HEADER_NOTES[Header.PROBLEMS]},
        **SEALED_HEADERS,
    }
    assert set(field_header.values()) <= set(properties), "DeadLetterContext has a header the schema lacks"
    return {
        "$schema": DRAFT,
        "$id": ID_PREFIX + "dead-letter-headers",
        "title": "Dead-letter headers",
        "description": "Headers of a dead letter: why and where from (dlq.*), how it is sealed (dlq.sealed.*; the "
                       "original key, headers and value inside the ciphertext, ADR 0026), what trace finds it by "
                       "(dlq.lookup.*: its event id, subject, dossier code and trace id where they identify nobody, "
                       "ADR 0038), and copies of the original headers that identify nobody.",
        "x-kafka-topic": DLQ_INTAKE.name,
        "type": "object",
        "properties": properties,
        "required": sorted(field_header[f] for f in ("reason", "source_topic", "source_partition", "source_offset")),
        "additionalProperties": {"type": "string"},
    }


def erasure_webhook_schema() -> dict[str, Any]:
    """The erasure webhook's body (`ApplicantErased`): every member is always sent, so every member is required."""
    schema = ApplicantErased.model_json_schema(mode="serialization")
    schema.update({
        "required": list(ApplicantErased.model_fields), "$schema": DRAFT, "$id": ID_PREFIX + ERASED_EVENT_TYPE,
        "x-cloudevents-type": ERASED_EVENT_TYPE,
        "x-delivered-as": "signed webhook, to subscribers that receive applicants' data (include_personal_data), one "
                          f"per erasure notice on {PRIVACY_ERASURES.name}"})
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_files() -> dict[str, str]:
    """File name -> file content, for every schema this module writes."""
    files = {f"{name}.json": render(event_schema(name, model)) for name, model in sorted(EVENT_TYPES.items())}
    files[DEADLETTER_FILE] = render(deadletter_schema())
    files[f"{ERASED_EVENT_TYPE}.json"] = render(erasure_webhook_schema())
    return files


def committed_files(directory: Path = SCHEMA_DIR) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.json"))}


def breaking_changes(committed: dict[str, str], current: dict[str, str]) -> dict[str, list[str]]:
    """Per committed file: why the current schema cannot replace it (missing file or incompatible change)."""
    found: dict[str, list[str]] = {}
    for name, text in committed.items():
        if name not in current:
            found[name] = ["schema no longer generated (event type removed or renamed)"]
        elif problems := incompatibilities(json.loads(text), json.loads(current[name])):
            found[name] = problems
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if committed files differ; write nothing")
    parser.add_argument("--allow-breaking", action="store_true", help="overwrite even backward-incompatible changes")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR)
    args = parser.parse_args(argv)
    current, committed = schema_files(), committed_files(args.dir)
    changed = sorted(n for n in current if committed.get(n) != current[n])
    breaking = breaking_changes(committed, current)
    for name, problems in sorted(breaking.items()):
        print(f"BREAKING {name}:", *(f"  - {p}" for p in problems), sep="\n", file=sys.stderr)
    if args.check:
        print(f"schemas: {len(changed)} out of date" + (f" ({', '.join(changed)})" if changed else ""))
        return 1 if changed or breaking else 0
    if breaking and not args.allow_breaking:
        print("schemas: refusing to overwrite published schemas; add a new type version (…v2) instead", file=sys.stderr)
        return 1
    args.dir.mkdir(parents=True, exist_ok=True)
    for name in changed:
        (args.dir / name).write_text(current[name], encoding="utf-8")
    print(f"schemas: {len(changed)} written, {len(current) - len(changed)} unchanged in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
