"""What normalising one record gives: a canonical event accepted, or a rejection naming field and reason.

pydantic's validation errors are translated here into rejections: the field by its canonical path (or the portal's
own names), at most `MAX_PROBLEMS` listed, never the input value (it may be personal data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas import limits
from schemas.deadletter import MAX_PROBLEMS as MAX_PROBLEMS  # re-exported: the gateway's limit names it here
from schemas.deadletter import Reason, Rejection
from schemas.dossier import APPLICANT_FORMS
from schemas.envelope import Event
from schemas.personal import KeyRecord


@dataclass(frozen=True, slots=True)
class Accepted:
    event: Event
    keys: tuple[KeyRecord, ...] = ()
    """Sealed events only: data-key records to write in the same transaction as the event (`privacy.store`)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    rejection: Rejection
    problems: tuple[Rejection, ...]
    """Every problem found (the first is `rejection`); the gateway lists them all."""


Outcome = Accepted | Rejected


def reject(reason: Reason, field: str, message: str) -> Rejected:
    r = Rejection(reason=reason, field=field, message=message)
    return Rejected(r, (r,))


_REASON_OF_TYPE: dict[str, Reason] = {
    "missing": Reason.MISSING_FIELD,
    "extra_forbidden": Reason.UNKNOWN_FIELD,
    "too_long": Reason.TOO_LARGE,  # a list past `limits.MAX_ITEMS` (strings past their length: string_too_long)
    **{r.value: r for r in Reason},
}


NameField = Callable[[tuple[str | int, ...]], str]
"""Names the field of an error location (the canonical path, or the portal's own field names)."""


# MAX_PROBLEMS (`schemas.deadletter`): problems listed per record; past it one entry counts the rest. A record of a
# thousand bad list items (each list at its item limit) gave thousands of problems: a 4xx answer 77 times the size of
# its request, built on the loop. The dead letter's `dlq.problems` lists the same.


def _field_path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _named(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The location with every key that is not a plain identifier replaced by `limits.UNNAMED_KEY`."""
    return tuple(p if isinstance(p, int) else limits.shown_key(p) for p in loc)


def from_validation(error: ValidationError, name_field: NameField = _field_path) -> Rejected:
    """A record pydantic refused: each problem with its field named by `name_field`, at most `MAX_PROBLEMS` listed."""
    listed = error.errors(include_url=False, include_input=False)[:MAX_PROBLEMS]
    problems = tuple(_problem(e, name_field) for e in listed)
    if (more := error.error_count() - len(problems)) > 0:
        problems += (Rejection(reason=problems[0].reason, field="(record)",
                               message=f"{more} more problems in this record are not listed (the first "
                                       f"{MAX_PROBLEMS} are)"),)
    return Rejected(problems[0], problems)


def _without_form(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The location without the applicant group's form tag (`data.applicant.clear.phone` -> `data.applicant.phone`)."""
    if "applicant" not in loc:
        return loc
    i = loc.index("applicant") + 1
    return loc[:i] + loc[i + 1:] if i < len(loc) and loc[i] in APPLICANT_FORMS else loc


def _problem(e: ErrorDetails, name_field: NameField) -> Rejection:
    loc = _named(_without_form(tuple(e["loc"])))
    ctx_field = (e.get("ctx") or {}).get("field")
    if isinstance(ctx_field, str):
        loc = (*loc, ctx_field)
    field = name_field(loc) or "(record)"
    msg = e["msg"]
    if e["type"] == "string_pattern_mismatch" and (e.get("ctx") or {}).get("pattern") == limits.NO_CONTROL_CHARACTERS:
        msg = "an identifier may not contain control, line-separator or bidirectional-override characters"
    return Rejection(reason=_REASON_OF_TYPE.get(e["type"], Reason.INVALID_FIELD), field=field,
                     message=f"{field}: {msg}")
