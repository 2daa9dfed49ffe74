"""YAML that YAML 1.1 and YAML 1.2 readers read alike: PyYAML's safe dump, with every string quoted that a 1.2 reader
would take for a number, a boolean or null.

PyYAML writes YAML 1.1 and leaves a string plain when a YAML 1.1 reader would read it back as a string: `02269` (not
octal in 1.1: it has a 9), `08`, `1e5`, `0o17`. A YAML 1.2 reader (the core schema: the JavaScript `yaml` and
`js-yaml` packages the AsyncAPI tooling uses) reads those as the numbers 2269, 8, 100000.0 and 15, so each commune
code example in the AsyncAPI document failed its own `type: string` schema (55 values, 2026-12 contract audit).
Adding the core schema's patterns to the dumper's resolvers makes it see that such a string would not come back as
written, and quote it.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml

CORE_SCHEMA: Final[dict[str, tuple[str, str]]] = {
    "tag:yaml.org,2002:null": (r"~|null|Null|NULL", "~nN"),
    "tag:yaml.org,2002:bool": (r"true|True|TRUE|false|False|FALSE", "tTfF"),
    "tag:yaml.org,2002:int": (r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    "tag:yaml.org,2002:float": (r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", "-+.0123456789"),
}
"""The YAML 1.2 core schema's plain scalars that are not strings (YAML 1.2.2, 10.3.2): tag -> (the pattern a whole
scalar matches, the characters such a scalar may start with)."""


class Dumper(yaml.SafeDumper):
    """`yaml.SafeDumper` that also quotes what a YAML 1.2 core-schema reader would not read as a string."""


for _tag, (_pattern, _first) in CORE_SCHEMA.items():
    Dumper.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), list(_first))


def dump(data: Any) -> str:
    """`data` as block YAML in document order, Unicode as is, lines of at most 120 characters where they can break."""
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120)
