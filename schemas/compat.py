"""Backward-compatibility check between two JSON Schemas of the same event type.

Rule: everything the old schema accepted, the new one must still accept, and no
property a consumer may read may disappear. A change that breaks this needs a
new event type version (`...v2`), not an edit of `...v1`.

The checker understands the subset of JSON Schema that pydantic generates:
local `$ref`s into `$defs`, `anyOf`/`oneOf` (nullable fields), `type`, `enum`,
`const`, objects (`properties`, `required`, `additionalProperties`), arrays
(`items`, `minItems`, `maxItems`), string and number bounds, `pattern`, `format`.
Anything it cannot prove compatible is reported, never silently accepted.

Safety limits (issue 11). One kind of tightening is accepted: a bound the old schema
did not have at all (`maxItems`, `maxLength`, the time range `formatMinimum` /
`formatMaximum`, or the identifier pattern that refuses control characters), when the
new schema marks it `x-safety-limit` and it is no tighter than `schemas.limits.FLOORS`.
Such limits fix bugs: every record they refuse either crashed a service that reads it
(year 1 stopped intake, year 9999 notify and metrics; a CR/LF in a code ended an e-mail
worker) or is far beyond anything a commune system sends (a thousand requested
documents, a 500-character village name), so no record that ever reached a consumer is
refused by them. The same holds for `format: uri-reference` on CloudEvents' `source`: the
spec requires it, and Java's CloudEvents SDK throws reading a record whose source is
none, stopping a consumer there. Lowering a bound that existed, or a marked bound
tighter than its floor, is still reported.

Required. A property that becomes required breaks the old schema, unless the old one pinned it to a single value
that is also its default (`const` = `default`): the writer always wrote it, so no published record lacks it
(CloudEvents' `type` and `specversion`, required since 2026-12-06).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.limits import FLOORS, SAFETY_LIMIT

Schema = Mapping[str, Any]
Seen = frozenset[tuple[str | None, str | None]]
"""Pairs of (old, new) `$ref`s already being compared: a recursive definition is compared once."""

_LOWER_BOUNDS = ("minLength", "minItems", "minimum", "exclusiveMinimum", "minProperties", "formatMinimum")
_UPPER_BOUNDS = ("maxLength", "maxItems", "maximum", "exclusiveMaximum", "maxProperties", "formatMaximum")
_EXACT = ("pattern", "format", "multipleOf")


def incompatibilities(old: Schema, new: Schema) -> list[str]:
    """Readable `path: problem` lines; empty when `new` is a backward-compatible evolution of `old`."""
    return _Check(old, new).compare(old, new, "$", frozenset())


class _Check:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.roots = (old_root, new_root)

    def _resolve(self, schema: Schema, side: int) -> tuple[Schema, str | None]:
        ref = schema.get("$ref")
        if ref is None:
            return schema, None
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, not {ref}")
        target: Any = self.roots[side]
        for part in ref[2:].split("/"):
            target = target[part]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return merged, ref

    def compare(self, old: Schema, new: Schema, path: str, seen: Seen) -> list[str]:
        old, old_ref = self._resolve(old, 0)
        new, new_ref = self._resolve(new, 1)
        if old_ref or new_ref:
            if (old_ref, new_ref) in seen:
                return []  # recursive definition already being compared
            seen = seen | {(old_ref, new_ref)}
        old_branches, new_branches = _branches(old), _branches(new)
        if len(old_branches) > 1 or len(new_branches) > 1:
            problems: list[str] = []
            for i, branch in enumerate(old_branches):
                attempts = [self.compare(branch, nb, path, seen) for nb in new_branches]
                if all(attempts):
                    best = min(attempts, key=len)
                    problems += [f"{path}: alternative {i} is no longer accepted", *best]
            return problems
        return self._compare_single(old, new, path, seen)

    def _compare_single(self, old: Schema, new: Schema, path: str, seen: Seen) -> list[str]:
        problems = _types(old, new, path) + _values(old, new, path) + _bounds(old, new, path)
        problems += self._objects(old, new, path, seen) + self._arrays(old, new, path, seen)
        return problems

    def _objects(self, old: Schema, new: Schema, path: str, seen: Seen) -> list[str]:
        problems: list[str] = []
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        for name, old_prop in old_props.items():
            if name not in new_props:
                problems.append(f"{path}.{name}: property removed")
            else:
                problems += self.compare(old_prop, new_props[name], f"{path}.{name}", seen)
        for name in sorted(set(new.get("required", ())) - set(old.get("required", ()))):
            if not _always_written(old_props.get(name, {})):
                problems.append(f"{path}.{name}: property became required")
        old_extra, new_extra = old.get("additionalProperties", True), new.get("additionalProperties", True)
        if new_extra is False and old_extra is not False:
            problems.append(f"{path}: additionalProperties tightened to false")
        elif isinstance(new_extra, Mapping) and old_extra is not False:
            problems += self.compare(old_extra if isinstance(old_extra, Mapping) else {}, new_extra, f"{path}.*", seen)
        if old_extra is not False:  # old data may already carry a property the new schema now describes
            extra_schema = old_extra if isinstance(old_extra, Mapping) else {}
            for name in sorted(set(new_props) - set(old_props)):
                problems += self.compare(extra_schema, new_props[name], f"{path}.{name}", seen)
        return problems

    def _arrays(self, old: Schema, new: Schema, path: str, seen: Seen) -> list[str]:
        if "items" not in new:
            return []
        return self.compare(old.get("items", {}), new["items"], f"{path}[]", seen)


def _always_written(schema: Schema) -> bool:
    """A property the old schema pinned to one value that is also its default (`const` = `default`: a `Literal` field
    with its value as default, such as CloudEvents' `type` and `specversion`). The writer serialises defaults, so every
    record it published carries it: requiring it refuses no record that was ever written."""
    return "const" in schema and "default" in schema and schema["const"] == schema["default"]


def _branches(schema: Schema) -> list[Schema]:
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            return [{**rest, **b} for b in schema[key]]
    return [schema]


def _type_set(schema: Schema) -> set[str] | None:
    if "type" in schema:
        t = schema["type"]
        return {t} if isinstance(t, str) else set(t)
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        return {_json_type(v) for v in values}
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _types(old: Schema, new: Schema, path: str) -> list[str]:
    old_types, new_types = _type_set(old), _type_set(new)
    if new_types is None:
        return []
    if old_types is None:
        return [f"{path}: type narrowed from any to {sorted(new_types)}"]
    widened = new_types | ({"integer"} if "number" in new_types else set())
    lost = old_types - widened
    return [f"{path}: type {sorted(lost)} no longer accepted (now {sorted(new_types)})"] if lost else []


def _values(old: Schema, new: Schema, path: str) -> list[str]:
    def allowed(schema: Schema) -> list[Any] | None:
        if "const" in schema:
            return [schema["const"]]
        return list(schema["enum"]) if "enum" in schema else None

    old_values, new_values = allowed(old), allowed(new)
    if new_values is None:
        return []
    if old_values is None:
        return [f"{path}: restricted to {new_values!r}"]
    removed = [v for v in old_values if v not in new_values]
    return [f"{path}: value {v!r} removed" for v in removed]


def _bounds(old: Schema, new: Schema, path: str) -> list[str]:
    problems = []
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]) and not _safety_limit(old, new, key):
            problems.append(f"{path}: {key} raised to {new[key]!r} (was {old.get(key)!r})")
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]) and not _safety_limit(old, new, key):
            problems.append(f"{path}: {key} lowered to {new[key]!r} (was {old.get(key)!r})")
    for key in _EXACT:
        if key in new and new[key] != old.get(key) and not _safety_limit(old, new, key):
            problems.append(f"{path}: {key} changed to {new[key]!r} (was {old.get(key)!r})")
    return problems


def _safety_limit(old: Schema, new: Schema, key: str) -> bool:
    """A bound added where there was none, marked as a safety limit and no tighter than its floor (module doc)."""
    if key in old or new.get(SAFETY_LIMIT) is not True or key not in FLOORS:
        return False
    floor = FLOORS[key]
    if key in ("pattern", "format"):
        return bool(new[key] == floor)
    if key == "formatMinimum":
        return bool(new[key] <= floor)  # RFC 3339 UTC texts of one form compare as their times
    return bool(new[key] >= floor)
