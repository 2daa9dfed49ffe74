"""The published JSON Schemas as an integrator checks with them: Draft 2020-12, each by the event's `type`, formats
asserted. jsonschema asserts `date-time` only with rfc3339-validator installed, which is not a dependency here, so
the checker below says what RFC 3339 (section 5.6) does: a full date and time with its offset."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from schemas import export

FORMATS = FormatChecker()
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


@FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # a format applies to strings; `type` judges the rest
    if not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:  # a 30 February, an hour 25
        return False
    return True


SCHEMAS: dict[str, dict[str, Any]] = {
    name.removesuffix(".json"): json.loads(text) for name, text in export.committed_files().items()
    if name != export.DEADLETTER_FILE}
"""The committed schema of each event type, by type."""


def problems(event: dict[str, Any], type_name: str | None = None) -> list[str]:
    """Why `event` (structured CloudEvents JSON) fails the committed schema of its `type` (or of `type_name`); empty
    when it passes."""
    validator = Draft202012Validator(SCHEMAS[type_name or event["type"]], format_checker=FORMATS)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message[:300]}"
            for e in validator.iter_errors(event)]
