"""A dashboard JSON checked against Grafana 11's dashboard model, as the grafana-foundation-sdk generates it.

The SDK's classes are generated from Grafana's own schema (the dashboard kind and each
panel and data-source plugin's schema), but their `from_json` is lenient: it drops
fields it does not know and copies values without looking at their type. `problems`
makes it strict in three passes over the same model:
- every field of the JSON must survive a decode and re-encode (a dropped field is unknown
  to the model: a typo, or something Grafana 11 no longer reads);
- every decoded value must have the type the model declares (enums and literals by value,
  nested objects recursively, including the panel plugin's own `options` and `custom`
  field config);
- every panel is of a panel plugin the model knows (or a row) and every query of a data
  source plugin it knows, and the dashboard's schemaVersion is not newer than the model's.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

register_default_plugins()
MODEL_SCHEMA_VERSION: int = Dashboard().schema_version


def problems(board: dict[str, Any]) -> list[str]:
    """What in `board` does not fit Grafana 11's dashboard model ([] when it fits), each with its JSON path."""
    try:
        model = Dashboard.from_json(board)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return [f"$: the model cannot decode it ({type(exc).__name__}: {exc})"]
    found = _dropped(board, _encoded(model), "$")
    found += _mistyped(model, "$")
    found += _unknown_plugins(board)
    version = board.get("schemaVersion")
    if isinstance(version, int) and version > MODEL_SCHEMA_VERSION:
        found.append(f"$.schemaVersion: {version} is newer than the model's {MODEL_SCHEMA_VERSION}")
    return found


def _encoded(model: object) -> Any:
    return json.loads(json.dumps(model, cls=JSONEncoder))


def _dropped(original: Any, encoded: Any, path: str) -> list[str]:
    """Fields of `original` missing from (or changed in) its re-encoding; defaults the model adds are fine."""
    if isinstance(original, dict):
        if not isinstance(encoded, dict):
            return [f"{path}: an object the model reads as {type(encoded).__name__}"]
        out = []
        for key, value in original.items():
            if key not in encoded:
                out.append(f"{path}.{key}: unknown field")
            else:
                out += _dropped(value, encoded[key], f"{path}.{key}")
        return out
    if isinstance(original, list):
        if not isinstance(encoded, list) or len(encoded) != len(original):
            return [f"{path}: a list the model does not read back as the same list"]
        pairs = enumerate(zip(original, encoded, strict=True))
        return [p for i, (a, b) in pairs for p in _dropped(a, b, f"{path}[{i}]")]
    return [] if original == encoded else [f"{path}: {original!r} reads back as {encoded!r}"]


def _is_model(value: object) -> bool:
    return callable(getattr(value, "to_json", None)) and not isinstance(value, cogruntime.UnknownDataquery)


def _mistyped(model: object, path: str) -> list[str]:
    """Every attribute of a decoded model object against the type its class declares, recursively."""
    hints = typing.get_type_hints(type(model))
    out = []
    for name, hint in hints.items():
        out += _check(getattr(model, name, None), hint, f"{path}.{_json_name(name)}")
    return out


def _json_name(attribute: str) -> str:
    """The JSON field of an SDK attribute, near enough for a message (`grid_pos` -> `gridPos`, `type_val` -> `type`)."""
    head, *rest = attribute.removesuffix("_val").split("_")
    return head + "".join(part.capitalize() for part in rest)


def _check(value: Any, hint: Any, path: str) -> list[str]:
    """`value` against `hint`: [] when it fits, else why not (the first branch's reason for a union)."""
    if isinstance(value, cogruntime.UnknownDataquery):
        return [f"{path}: a query of no data source plugin the model knows"]
    if hint is Any or hint is object:
        return _mistyped(value, path) if _is_model(value) else []
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        reasons = [_check(value, arg, path) for arg in args if arg is not type(None)]
        return [] if any(not r for r in reasons) else reasons[0]
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {list(args)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where the model wants a list"]
        return [p for i, item in enumerate(value) for p in _check(item, args[0], f"{path}[{i}]")]
    if origin is dict:
        return [] if isinstance(value, dict) else [f"{path}: {type(value).__name__} where the model wants an object"]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return [] if value in {m.value for m in hint} else [f"{path}: {value!r} is not one of "
                                                            f"{sorted(str(m.value) for m in hint)}"]
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} where the model wants a number"]
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} where the model wants an integer"]
    if hint in (str, bool):
        return [] if type(value) is hint else [f"{path}: {value!r} where the model wants a {hint.__name__}"]
    if isinstance(hint, type) and callable(getattr(hint, "from_json", None)):
        if isinstance(value, hint):
            return _mistyped(value, path)
        if isinstance(value, dict):  # a few fields the SDK leaves undecoded (panel links, transformations)
            decoded = hint.from_json(value)
            return _dropped(value, _encoded(decoded), path) + _mistyped(decoded, path)
        return [f"{path}: {type(value).__name__} where the model wants {hint.__name__}"]
    return [] if isinstance(hint, type) and isinstance(value, hint) else [f"{path}: unchecked type {hint!r}"]


def _unknown_plugins(board: dict[str, Any]) -> list[str]:
    known = set(cogruntime.Runtime().panelcfg_variants) | {"row"}
    return [f"$.panels[{i}].type: {panel.get('type')!r} is no panel plugin of the model"
            for i, panel in enumerate(board.get("panels") or []) if panel.get("type") not in known]
