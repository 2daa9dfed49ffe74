"""How the metrics worker decodes a canonical record: with the view its handler names (ADR 0023).

`fast` is the worker's decode: a dossier status change as intake writes it through msgspec
(`services.metrics.fast`), any record that path cannot decide through `slim`. `slim` decodes each type with
its `HANDLERS` model (a slim view reading only what the merge needs, `schemas.metrics_views`), or the
registered full model for a type no indicator counts. `full` is `schemas.wire.decode`, every field validated:
the oracle of the tests and the "before" of the benchmark. Each raises `wire.InvalidRecord` (reason, field)
for a record it refuses; the shell counts it invalid.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas import views, wire
from schemas.envelope import Event
from schemas.events import EVENT_TYPES
from services.metrics import fast as fastpath
from services.metrics.handlers import HANDLERS, Decoded

Decode = Callable[[wire.Headers, bytes | None], Decoded]
"""Record headers and value -> the event; raises `wire.InvalidRecord`."""


def view_of(event_type: str) -> type[Event] | None:
    """The model a record of `event_type` is decoded with; None for an unknown type."""
    handler = HANDLERS.get(event_type)
    return handler.model if handler is not None else EVENT_TYPES.get(event_type)


def fast(headers: wire.Headers, value: bytes | None) -> Decoded:
    return fastpath.dossier(headers, value) or views.decode(view_of, headers, value)


def slim(headers: wire.Headers, value: bytes | None) -> Event:
    return views.decode(view_of, headers, value)


def full(headers: wire.Headers, value: bytes | None) -> Event:
    return wire.decode(headers, value)
