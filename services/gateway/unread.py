"""An answer given before its request's body ended closes the connection: the rest of the body is never drained.

uvicorn keeps a kept-alive connection open after an answer and reads what is left of the request's body to reach
the next request. A request refused from its headers alone (a wrong key 401, 403, 429, a bad parameter 422, a
404/405, the operators' 401) could so keep sending a body of any size, at the body-rate allowance, on a slot the
connection cap never evicts (it is busy with a body): 103 MiB after a 401, still open after 40 s (review of
2026-12-02). The gateway's own refusals of an unread body (413, 415) said `Connection: close` already; this adds it
to every answer that starts while the body has not ended, whichever route gave it. A request without a body, or one
whose body the route read to its end, keeps its connection.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.telemetry import UNREAD_CLOSED


class CloseUnreadBodies:
    """ASGI middleware: `Connection: close` on a response that starts before the request's body was read to its end."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        ended = False

        async def receiving() -> Message:
            nonlocal ended
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                ended = True  # the body's last part, or the client went away
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and not ended:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
                UNREAD_CLOSED.inc()
            await send(message)

        await self.app(scope, receiving, sending)


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """A request that says a body follows: chunked, or a Content-Length other than 0."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (lowered == b"content-length" and value.strip() != b"0"):
            return True
    return False
