"""Where in a YAML file PyYAML met a problem, as the files' errors say it (the source registry, the keys files)."""

from __future__ import annotations

import yaml


def problem_at(exc: yaml.YAMLError) -> str:
    """` (line N, column M)` of the problem `exc` marks (PyYAML counts from 0), or nothing when it marks none."""
    mark = getattr(exc, "problem_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
