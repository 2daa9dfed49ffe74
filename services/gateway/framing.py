"""A request that gives its body's length twice, by `Content-Length` and by `Transfer-Encoding`, is refused unread.

h11 reads such a body by its Transfer-Encoding (RFC 9112 §6.3) and then keeps the connection for the next request,
where the RFC says the server MUST close it: a load balancer in front that framed the same bytes by their
Content-Length drew another boundary between requests than the gateway, and what followed the chunked body's end was
answered as a request of its own (request smuggling; audit of 2026-12-05). No client the gateway serves needs both:
400 `bad_framing`, not a byte of the body read, the connection closed, on every path.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway import api
from services.gateway.telemetry import ANSWERS, REFUSED

EVENTS_PATH = "/v1/events"


class RefuseDoubleFraming:
    """ASGI middleware: 400 `bad_framing` and `Connection: close` for a request with both framing headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not framed_twice(scope["headers"]):
            await self.app(scope, receive, send)
            return
        REFUSED.labels("bad_framing").inc()  # not logged: a refusal costs its sender nothing
        if scope.get("path") == EVENTS_PATH:  # `commune_gateway_answers_total` counts POST /v1/events' answers
            ANSWERS.labels("400").inc()
        body = api.error("bad_framing", "the request has both Content-Length and Transfer-Encoding: send one")
        await JSONResponse(body, status_code=400, headers={"Connection": "close"})(scope, receive, send)


def framed_twice(headers: list[tuple[bytes, bytes]]) -> bool:
    names = {name.lower() for name, _ in headers}
    return b"content-length" in names and b"transfer-encoding" in names
