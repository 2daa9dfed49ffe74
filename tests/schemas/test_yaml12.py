"""The generated YAML reads the same to a YAML 1.2 reader (the JavaScript AsyncAPI tooling) as to PyYAML."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import pytest
import yaml

from schemas import asyncapi, yaml12


class Yaml12Loader(yaml.SafeLoader):
    """A YAML 1.2 core-schema reader, as the `yaml` and `js-yaml` packages are: its plain scalars resolve by the
    core schema's patterns only (`02269` is an int, `yes` a string), not by YAML 1.1's."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, re.Pattern[str]]]]] = {}


for _tag, (_pattern, _first) in {
    "tag:yaml.org,2002:null": (r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    "tag:yaml.org,2002:bool": (r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    "tag:yaml.org,2002:int": (r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    "tag:yaml.org,2002:float": (r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", list("-+.0123456789")),
}.items():  # YAML 1.2.2, 10.3.2, written out here rather than read from the module under test
    Yaml12Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _first)


def _int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    return int(text[2:], 8) if text.startswith("0o") else int(text[2:], 16) if text.startswith("0x") else int(text)


def _float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith((".inf", ".nan")):
        return -math.inf if text.startswith("-") else math.nan if text.endswith("nan") else math.inf
    return float(text)


def _bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _float)
Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _bool)


def _strings(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a parsed document by its path, with its type: a string read as a number shows."""
    if isinstance(value, dict):
        return {k: v for key, child in value.items() for k, v in _strings(child, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, child in enumerate(value) for k, v in _strings(child, f"{path}/{i}").items()}
    return {path: (type(value).__name__, value)}


@pytest.mark.unit
def test_a_yaml_1_2_reader_reads_the_committed_asyncapi_document_as_generated() -> None:
    """Every value of schemas/asyncapi.yaml, read by a YAML 1.2 core-schema reader, has the generator's type and value:
    the commune and province examples stay the strings "02269" and "08" (PyYAML's YAML 1.1 dump left them plain, read
    by the JavaScript tooling as 2269 and 8: 55 values, each failing its own `type: string` schema)."""
    read = _strings(yaml.load(asyncapi.COMMITTED.read_text(encoding="utf-8"), Loader=Yaml12Loader))
    differ = {path: (ours, theirs) for path, ours in _strings(asyncapi.document()).items()
              if (theirs := read.get(path)) != ours}  # read once: walked again per value, it took 20 s in CI
    assert differ == {} and len(read) > 1000


@pytest.mark.unit
@pytest.mark.parametrize("text", ["02269", "08", "0", "-12", "+7", "1e5", "1.5E-3", ".5", "1.", "0o17", "0x1F",
                                  ".inf", "-.Inf", ".NaN", "true", "FALSE", "null", "~", "", "yes", "2026-12-01"])
def test_strings_a_yaml_1_2_reader_would_not_read_as_strings_are_quoted(text: str) -> None:
    """Each YAML 1.2 core-schema number, boolean and null form (and YAML 1.1's, as before) is dumped quoted, and both
    readers read it back as the same string."""
    dumped = yaml12.dump({"value": text, "list": [text]})
    assert yaml.load(dumped, Loader=Yaml12Loader) == {"value": text, "list": [text]}
    assert yaml.safe_load(dumped) == {"value": text, "list": [text]}
