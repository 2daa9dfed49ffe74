"""Hypothesis strategies for fuzzing: events drawn from the committed JSON Schemas, hostile values, mutations.

`from_schema` covers the subset of JSON Schema pydantic generates (the subset `schemas.compat` reads), so the
strategies follow the published contracts, bounds included (`formatMinimum`/`formatMaximum`, `maxItems`, ...).
`hostile` values break them: control characters, huge strings and numbers, impossible dates, deep nesting and
long arrays (as raw JSON text through `orjson.Fragment`, so they reach the parser as an attacker would send them).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from schemas.admin import commune_provinces
from schemas.events import EVENT_TYPES
from schemas.limits import NO_CONTROL_CHARACTERS

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {p.name.removesuffix(".json"): json.loads(p.read_text(encoding="utf-8"))
           for p in sorted((ROOT / "schemas" / "jsonschema").glob("vn.communebus.*.json"))
           if p.name.removesuffix(".json") in EVENT_TYPES}
"""The committed schema of each canonical event type (not the erasure webhook's, which no topic carries)."""
_COMMON: dict[str, Any] = {
    "deadline": None, "database": None, "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]}
settings.register_profile("fuzz-ci", derandomize=True, **_COMMON)
settings.register_profile("fuzz-explore", derandomize=False, **_COMMON)
PROFILE = os.environ.get("FUZZ_PROFILE", "fuzz-ci")
"""`fuzz-ci` (default): derandomized, the same examples every run, so CI is reproducible. `FUZZ_PROFILE=fuzz-explore`:
new examples each run, ten times as many, for a developer hunting bugs. Only the fuzz tests use these profiles
(`fuzz_settings`); hypothesis' global default is left alone for other tests."""
SCALE = 10 if PROFILE == "fuzz-explore" else 1
EXAMPLES: Counter[str] = Counter()
"""Examples run per fuzz test (printed by tests/fuzz/conftest.py)."""
SECRET = "0987654321-SECRET"
"""A personal-data-like value: no rejection message may ever contain it."""
COMMUNES = sorted(commune_provinces().items())[:: max(1, len(commune_provinces()) // 300)]


def fuzz_settings(n: int) -> settings:
    """Settings of a fuzz test that runs `n` examples under the ci profile."""
    return settings(settings.get_profile(PROFILE), max_examples=n * SCALE)


# --- from the committed JSON Schemas ------------------------------------------------------------------------------

def from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Instances of `schema` (local $refs resolved in `root`)."""
    root = root or schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return from_schema({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            return st.one_of(*(from_schema({**rest, **branch}, root) for branch in schema[key]))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, root)
    if kind == "array":
        items = from_schema(schema.get("items", {}), root)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    if kind == "integer":  # within 64 bits where the schema sets no bound (orjson writes no more; HOSTILE_NUMBERS
        # pastes longer ones raw): an unbounded draw past them failed the test in its harness, not in intake
        return st.integers(schema.get("minimum", -(2**63)), schema.get("maximum", 2**63 - 1))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        return _string(schema)
    return st.none()


def _object(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fixed = {k: from_schema(v, root) for k, v in props.items() if k in required}
    optional = {k: from_schema(v, root) for k, v in props.items() if k not in required}
    return st.fixed_dictionaries(fixed, optional=optional)


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
    if schema.get("format") == "date-time":
        earliest = datetime.fromisoformat(schema.get("formatMinimum", "0001-01-02T00:00:00Z"))
        latest = datetime.fromisoformat(schema.get("formatMaximum", "9999-12-30T00:00:00Z"))
        return st.builds(lambda t, off: t.astimezone(timezone(timedelta(minutes=off))).isoformat(),
                         st.datetimes(earliest.replace(tzinfo=None), latest.replace(tzinfo=None),
                                      timezones=st.just(UTC)),
                         st.sampled_from([0, 420, -300, 840, -720]))
    if schema.get("format") == "uri-reference":  # RFC 3986: a scheme or none, a path of its characters, an escape
        return st.from_regex(r"\A(?:[a-z][a-z0-9+.-]*:)?/[A-Za-z0-9._~!$&'()*+,;=:@/-]{0,38}(?:%[0-9A-F]{2})?\Z"
                             ).filter(lambda s: low <= len(s) <= high)
    if schema.get("pattern") == NO_CONTROL_CHARACTERS:
        return st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"],
                                     exclude_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"),
                       min_size=low, max_size=max(low, high)).filter(lambda s: low <= len(s.strip()))
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high)
    return st.text(min_size=low, max_size=max(low, high))


def _events(type_name: str) -> st.SearchStrategy[dict[str, Any]]:
    real = st.sampled_from(COMMUNES).map(lambda cp: {"commune": cp[0], "province": cp[1]})
    place: st.SearchStrategy[dict[str, str]] = st.one_of(real, real, real, st.just({}))
    return st.builds(lambda e, p: {**e, **p}, from_schema(SCHEMAS[type_name]), place)


EVENTS = st.one_of(*(st.tuples(st.just(name), _events(name)) for name in sorted(SCHEMAS)))
"""(type, structured CloudEvent) as each committed schema describes it; most in a real commune of its province."""


# --- hostile values -----------------------------------------------------------------------------------------------

def _raw(text: bytes) -> orjson.Fragment:
    return orjson.Fragment(text)


HOSTILE_STRINGS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\r\n", "TL-1\r\nBcc: x@y.vn", "\x00", "a\u202eb", "\u2028", "\u200f\u05d0", "\x85",
                     "\ufeff", "ﷺ" * 20, SECRET, "'; DROP TABLE --", "{dossier_code}", "%s%n", "\\u0000",
                     "Hồ sơ ខ្មែរ", "x" * 501, "x" * 20_000]),
)
HOSTILE_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(lambda i: i if -(2**63) <= i < 2**63 else _raw(str(i).encode())),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([_raw(b"1" * 5000), _raw(b"1e400"), _raw(b"-0"), _raw(b"1E-400"), _raw(b"NaN"),
                     _raw(b"Infinity"), _raw(b"123456789012345678901234567890"), _raw(b"0.1e99999999")]),
)
HOSTILE_DATES = st.one_of(
    st.sampled_from(["00010101000000", "99991231235959", "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00",
                     "0001-01-01T00:00:00+14:00", "20251301000000", "20250230000000", "2025-11-03T24:00:00",
                     "2025-11-03T23:59:60", "19741231235959", "21010101000000", "1975-01-01T00:00:00Z",
                     "2100-12-31T23:59:59Z", "+002025-11-03", "2025-W45-1", "00000000000000", "0" * 5000]),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)).map(lambda d: d.strftime("%Y%m%d%H%M%S").zfill(14)),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)).map(datetime.isoformat),
)
KEYS = HOSTILE_STRINGS.filter(lambda k: k != SECRET)
"""Member names: echoed as the field of an unknown member (a name, not a value), so never the secret."""
DEEP = st.sampled_from([33, 200, 255, 300, 1100]).map(lambda n: _raw(b"[" * n + b"1" + b"]" * n))
LONG = st.sampled_from([1001, 1001, 1001, 20_000, 1_000_000]).map(lambda n: _raw(b"[" + b"0," * (n - 1) + b"0]"))
LEAVES = st.one_of(st.none(), st.booleans(), HOSTILE_NUMBERS, HOSTILE_STRINGS, HOSTILE_DATES)
HOSTILE = st.one_of(
    LEAVES, DEEP, LONG,
    st.recursive(LEAVES, lambda c: st.lists(c, max_size=3) | st.dictionaries(KEYS, c, max_size=3),
                 max_leaves=8),
)
"""Any JSON value an attacker or a broken system might send in place of a field."""


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member or item of a JSON value (the value itself excluded)."""
    out: list[tuple[Any, ...]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out += paths(child, (*prefix, key))
    return out


@st.composite
def mutated(draw: st.DrawFn, bases: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    """(tag, one of `bases` with one to four members replaced by hostile values, deleted, or joined by unknown
    members)."""
    tag, base = draw(st.sampled_from(bases))
    obj = orjson.loads(orjson.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        where = paths(obj)
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict | list):
            continue
        if action == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(HOSTILE)
        else:
            parent[path[-1]] = draw(HOSTILE)
    return tag, obj


def dumps(obj: Any) -> bytes:
    """JSON bytes of a mutated value (fragments are pasted in as they are)."""
    return orjson.dumps(obj)

