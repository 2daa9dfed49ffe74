"""An exception out of a route is answered 500 `internal_error` and logged as its type and place, never whole.

Without this, Starlette answers a bare `Internal Server Error` and re-raises, and uvicorn prints the traceback
with the exception's message through the standard logging: a bug's message may quote what it was given (`int()`
quotes the text it could not read, pydantic the input value), so a citizen's phone number or CCCD reached the log
(reproduced 2026-12-02 with a publisher raising from `int("0987654321x")`). Here the exception is counted
(`commune_gateway_internal_errors_total`, alerted on with intake's internal errors), logged through structlog
(`gateway.internal_error`: the endpoint's name and `services.common.logging`'s type-and-place rendering), answered
in the gateway's error shape when no answer has started, and not re-raised. Cancellation is not an error here.

An exception out of the server's own `send` is not the route's bug: the connection is gone, or the server already
answered. A chunked body malformed in the packet that brought the headers (or past `chunks.chunks_allowed`) makes
uvicorn answer 400 and close while the route runs; the route's own answer then fails in h11 (`LocalProtocolError`).
Counted as an internal error, any client could keep the operators' alert firing (audit of 2026-12-06: four such
requests, `commune_gateway_internal_errors_total` 5). The gateway's server now drops such an answer unsent
(`connections.GuardedH11Protocol.send_400_response`); one whose `send` fails all the same is counted apart
(`commune_gateway_answers_unsent_total`) and logged at debug only.
"""

from __future__ import annotations

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway import api
from services.gateway.telemetry import ANSWERS, ANSWERS_UNSENT, INTERNAL_ERRORS

log = structlog.get_logger("gateway")
EVENTS_PATH = "/v1/events"


class AnswerBugs:
    """ASGI middleware: a route's unexpected exception becomes a counted, logged 500 in the gateway's error shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        unsent: Exception | None = None

        async def sending(message: Message) -> None:
            nonlocal started, unsent
            started = started or message["type"] == "http.response.start"
            try:
                await send(message)
            except Exception as exc:
                unsent = exc
                raise

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # a bug: anything a route meant to say, it said with a status of its own
            endpoint = getattr(scope.get("endpoint"), "__name__", "?")  # the route's function, never the raw path
            if unsent is not None and raised_by(exc, unsent):  # the server's or the client's doing, not the route's
                ANSWERS_UNSENT.inc()
                log.debug("gateway.answer_unsent", endpoint=endpoint, exc_info=exc)
                return
            INTERNAL_ERRORS.inc()
            log.error("gateway.internal_error", endpoint=endpoint, answered=started, exc_info=exc)
            if started:  # the answer is under way: nothing can be said; the server closes the connection
                return
            if scope.get("path") == EVENTS_PATH:  # `commune_gateway_answers_total` counts POST /v1/events' answers
                ANSWERS.labels("500").inc()
            body = api.error("internal_error", "the gateway met an unexpected error (logged for its operators); "
                             "retry later, with the same Idempotency-Key if the request had one")
            await JSONResponse(body, status_code=500, headers={"Connection": "close"})(scope, receive, send)


def raised_by(exc: BaseException, cause: BaseException) -> bool:
    """Whether `exc` is `cause` or was raised from it (`raise ... from`, as Starlette re-raises); an exception that
    merely arose while `cause` was handled (its `__context__`: a route's cleanup failing on its own) is not."""
    seen: BaseException | None = exc
    while seen is not None:
        if seen is cause:
            return True
        seen = seen.__cause__
    return False
