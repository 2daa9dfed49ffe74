"""`validate`'s verdict on a file: every record as intake would take it, by itself and among the file's others.

A record valid by itself may still be dead-lettered by intake: the same event (source and id) earlier in the file,
or an event too large once canonical and its applicant sealed (audit 2026-12-06: the gateway refused such records
with 422 while `validate` passed them, exit 0). The file is measured as the gateway measures a request's body
(`ingest.intake_refusals`), under intake's limits and sealing as the environment sets them for intake
(`INTAKE_MAX_RECORD_BYTES`, `INTAKE_MAX_CANONICAL_BYTES`, `INTAKE_SEAL_PERSONAL_DATA`: `IntakeLimits`), else its
defaults: a deployment's lower limit passed records its intake dead-letters.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from schemas import wire
from schemas.events import Family
from services.gateway.batch import RecordError, check
from services.gateway.ingest import intake_refusals
from services.intake.settings import IntakeLimits


@dataclass(frozen=True)
class Verdict:
    errors: list[RecordError]
    """Every problem, in the order of the file's records."""
    rejected: int
    """Records intake would dead-letter."""


def verdict(records: list[bytes], lines: list[int], *, family: Family | None, commune: str | None,
            limits: IntakeLimits | None = None) -> Verdict:
    """`lines`: the line of the file each record begins on, which a message names an earlier record by. `limits`:
    intake's, read from the environment if None."""
    limits = IntakeLimits() if limits is None else limits
    checked = check(records, family=family, commune=commune, max_bytes=limits.max_record_bytes,
                    max_errors=sys.maxsize)  # a file: every bad record
    events = [event for _, event in checked.events]
    more = intake_refusals(checked.indices, events, [wire.encode(e) for e in events],
                           max_record_bytes=limits.max_record_bytes, max_canonical_bytes=limits.max_canonical_bytes,
                           sealed=limits.seal_personal_data, named=lambda index: f"line {lines[index]}")
    errors = sorted([*checked.errors, *more], key=lambda e: e.index)  # stable: a record's problems keep their order
    return Verdict(errors, checked.rejected + len({e.index for e in more}))
