"""The commune of portal-shape records comes from `?commune=` or the `X-Commune-Code` header. A request naming two
different communes (the query one thing, the header another) had the query's taken silently, 202, the header's
dropped; it is refused, as any malformed parameter is, before anything is published."""

from __future__ import annotations

import orjson
import pytest

from tests.gateway.asgi import API_KEY, Recording, app, call
from tests.samples import portal_dossier

pytestmark = pytest.mark.unit
KEY = [(b"x-api-key", API_KEY.encode())]


async def test_a_query_and_a_header_naming_two_communes_are_refused() -> None:
    pub = Recording()
    answer = await call(app(pub), [*KEY, (b"x-commune-code", b"00691")], orjson.dumps(portal_dossier("P-1")),
                        query=b"commune=02269")
    assert answer.status == 422 and pub.sent == [], answer.json()
    assert answer.json()["error"] == "invalid_parameters"
    assert "X-Commune-Code" in answer.json()["message"] and "?commune=" in answer.json()["message"]


@pytest.mark.parametrize(("query", "header"), [(b"commune=02269", b"02269"), (b"commune=2269", b"02269"),
                                               (b"commune=02269", None), (b"", b"2269")])
async def test_one_commune_however_it_is_given_is_taken(query: bytes, header: bytes | None) -> None:
    pub = Recording()
    headers = [*KEY, *([(b"x-commune-code", header)] if header is not None else [])]
    answer = await call(app(pub), headers, orjson.dumps(portal_dossier("P-1")), query=query)
    assert answer.status == 202 and len(pub.sent) == 1, answer.json()
