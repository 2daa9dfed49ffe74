"""Every answer of the gateway has its error shape (`error`, `message`, `errors`), Starlette's own 404/405 too."""

from __future__ import annotations

import pytest

from tests.gateway.asgi import API_KEY, app, call

pytestmark = pytest.mark.unit


async def test_an_unknown_path_is_a_404_in_the_gateways_error_shape() -> None:
    answer = await call(app(), [(b"x-api-key", API_KEY.encode())], b"{}", path=b"/v1/nothing")
    assert answer.status == 404
    assert answer.json() == {"error": "not_found", "message": "Not Found", "errors": []}


async def test_a_wrong_method_is_a_405_that_says_which_are_allowed() -> None:
    answer = await call(app(), [], b"", path=b"/healthz")
    assert answer.status == 405 and answer.headers["allow"] == "GET"
    assert answer.json()["error"] == "method_not_allowed" and "detail" not in answer.json()
