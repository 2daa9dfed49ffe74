"""`POST /v1/events`, step by step: each step may answer, in this order.

1. a declared `Content-Length` over the body limit: 413, the body unread;
2. credentials from the headers alone (`auth.identify`): 401; a source outside the registry: 403. A signature
   is only checked for form, source and time here: its HMAC covers the body;
3. an API-key caller over its rate: 429 with Retry-After (a signed caller is counted once its signature
   verified, so nobody can spend another source's rate by naming it); a signed request from a peer address
   past its allowance of failed signatures, or with that allowance's worth of signed bodies already being read
   (`ratelimit.InFlight`): 429, the body unread; a Content-Type it cannot read: 415;
   an empty Idempotency-Key: 400;
4. the body, streamed under the limit (`receive.Receiver`): 413 as soon as it passes, the connection closed; a
   signed one past the bytes all addresses may have read unverified (`GATEWAY_UNVERIFIED_BODY_BYTES`): 503 `busy`,
   the rest unread, the connection closed; one past the bodies held until answered, its source's share (429) or in
   all (503 `busy`), with Retry-After: an API key's before it is read (by its declared length), a signed one's once
   verified; a signature verified over it before it is loaded into memory (401, a failure counted against the
   peer), then its source's rate and nonces held (429), its nonce claimed once for the window: 401 on a replay
   (none of the source's rate taken, a failure counted against the peer that replayed it);
5. the body checked (`ingest.plan`); then the Idempotency-Key claimed (`claims`; its lease counts Kafka waits):
   409 while another request holds it, the stored answer when it was answered, 422 when used for another request;
6. the check's refusal (400/403/422), the key's answer; else published with the key's answer in one transaction:
   202, or 503 with Retry-After (nothing published, the key freed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from schemas.events import Family
from services.common.sparse import Sparse
from services.gateway import api, idempotency
from services.gateway.auth import COMMUNE, IDEMPOTENCY_KEY, Identified, RequestLine, Unauthenticated, identify
from services.gateway.batch import READABLE, media_type_problem
from services.gateway.bodies import TooLarge, Unadmitted, declared_too_large
from services.gateway.claims import Claims, Stored, Ticket
from services.gateway.ingest import Publish, Refused, plan, rejected_counts
from services.gateway.keys import Credential
from services.gateway.publisher import BrokerUnavailable, Publisher
from services.gateway.ratelimit import RateLimiter
from services.gateway.receive import Receiver
from services.gateway.settings import GatewaySettings
from services.gateway.telemetry import ANSWERS, EVENTS, REFUSED
from services.sources.registry import Source, SourceRegistry

log = structlog.get_logger("gateway")
UNAUTHENTICATED_LOGGED = Sparse()
"""One `gateway.unauthenticated` line per reason every `sparse.EVERY_S` at most (all counted in
`commune_gateway_refused_total`): a wrong key or a stale signature costs its sender nothing."""

_HELD = "as many request bodies, being read or waiting for their check, as it may: retry later"
UNADMITTED = {  # (budget, over): the reason counted, the answer's status, kind and text
    ("held", "key"): ("held_bytes", 429, "rate_limited", f"this source holds {_HELD}"),
    ("held", "total"): ("held_bytes", 503, "busy", f"the gateway holds {_HELD}"),
    **dict.fromkeys([("disk", "key"), ("disk", "total")], ("no_disk_room", 503, "busy", "the gateway has no room on "
                                                          "its disk for this body: retry later")),
    ("unverified", "key"): ("failed_signatures", 429, "rate_limited", "too many signed bodies from this address are "
                            "being read at once"),
    ("unverified", "total"): ("unverified_bytes", 503, "busy", "the gateway is reading as many signed bodies, their "
                              "signatures not yet checked, as it may: retry later")}
INLINE_CHECK_BYTES = 256 * 1024
"""Bodies up to this size are checked on the event loop; larger ones in a worker thread."""
CHECK_THREADS = 1
"""Large bodies checked at once, each in a worker thread; the others wait their turn. Parsing a body takes 15 to 40
times its size in memory (a 10 MiB body of tiny records: ~400 MB), and the check is Python holding the GIL, so a
second thread adds memory and no speed. anyio's default, 40 at once, let four requests take 0.4-0.8 GB (review of
2026-12-02)."""


@dataclass
class Gateway:
    settings: GatewaySettings
    registry: SourceRegistry
    credentials: dict[str, Credential]
    publisher: Publisher
    claims: Claims
    limiter: RateLimiter
    raw_topic: dict[Family, str]
    clock: Callable[[], float]
    """Wall time: signatures' timestamps and claims."""
    ticks: Callable[[], float] = time.monotonic
    """What rates are measured by (the limiters): wall time stepped back (NTP, a VM resumed) left every bucket
    unrefilled until it caught up, every source refused 429 for as long (audit: 5,901 of 6,000 after 600 s)."""
    receiver: Receiver = field(init=False)
    """Step 4, the body, and the allowances of failed signatures per peer address."""
    checking: anyio.CapacityLimiter | None = field(init=False, default=None)
    """The worker threads that check large bodies (`CHECK_THREADS`), made on first use (in the event loop)."""

    def __post_init__(self) -> None:
        self.receiver = Receiver(self.settings, self.ticks)

    def answer(self, status: int, body: dict[str, Any], *, retry_after: int | None = None,
               close: bool = False, replayed: bool = False) -> JSONResponse:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if close:  # the rest of the body is not read: end the connection instead of draining it
            headers["Connection"] = "close"
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        ANSWERS.labels(str(status)).inc()
        return JSONResponse(body, status_code=status, headers=headers)

    def too_large(self, size: int) -> JSONResponse:
        REFUSED.labels("too_large").inc()
        return self.answer(413, api.error("too_large", f"the body passed {self.settings.max_body_bytes} bytes "
                                          f"(refused at {size})"), close=True)

    def unsupported(self, problem: str) -> JSONResponse:
        """415, the body unread (the connection closed: its bytes are not drained), the types it may be sent as."""
        REFUSED.labels("unsupported_media_type").inc()
        answer = self.answer(415, api.error("unsupported_media_type", problem), close=True)
        answer.headers.update({"Accept-Post": ", ".join(READABLE), "Accept-Encoding": "identity"})  # RFC 9110 12.5.3
        return answer

    def unauthenticated(self, why: str) -> JSONResponse:
        REFUSED.labels("unauthenticated").inc()
        if (refused := UNAUTHENTICATED_LOGGED.due(why)) is not None:  # `why` is one of auth.py's fixed reasons
            log.info("gateway.unauthenticated", why=why, refused_since_last=refused)
        return self.answer(401, api.error("unauthenticated", why))

    def limited(self, source: str) -> JSONResponse | None:
        if (wait := self.limiter.take(source, self.ticks())) == 0:
            return None
        REFUSED.labels("rate_limited").inc()
        return self.answer(429, api.error("rate_limited", "this source is over its request rate"), retry_after=wait)

    def unavailable(self) -> JSONResponse:
        return self.answer(503, api.error("broker_unavailable", "Kafka is unavailable; nothing was published, "
                                          "retry later"), retry_after=self.settings.retry_after_s)

    def unadmitted(self, refused: Unadmitted) -> JSONResponse:
        """A body past a byte budget, or one the disk has no room for: the rest of it unread, the connection closed."""
        reason, status, kind, why = UNADMITTED[refused.budget, refused.over]
        REFUSED.labels(reason).inc()
        retry_after = 1 if refused.budget == "unverified" else self.settings.retry_after_s
        return self.answer(status, api.error(kind, why), retry_after=retry_after, close=True)

    async def post(self, request: Request, family: Family | None, commune: str | None,
                   idempotency_key: str | None) -> JSONResponse:
        if (declared := declared_too_large(request.headers.get("content-length"),
                                           self.settings.max_body_bytes)) is not None:
            return self.too_large(declared)
        line = request_line(request)
        try:
            who = identify(request.headers, line, self.credentials, self.clock(), self.settings.signature_tolerance_s)
        except Unauthenticated as exc:
            return self.unauthenticated(str(exc))
        caller = self.registry.by_id.get(who.source_id)
        if caller is None:
            return self.answer(403, api.error("unauthorised_source",
                                              "the credential's source id is not in the source registry"))
        if who.pending is None and (refusal := self.limited(who.source_id)) is not None:
            return refusal
        peer = request.client.host if request.client is not None else ""
        if (wait := self.receiver.refused_unread(who, peer)) > 0:
            REFUSED.labels("failed_signatures").inc()
            return self.answer(429, api.error("rate_limited", "too many failed signatures from this address"),
                               retry_after=wait, close=True)  # the body unread
        if (problem := media_type_problem(request.headers)) is not None:
            return self.unsupported(problem)
        if idempotency_key is not None and not idempotency_key.strip():  # a client's unset variable, not a key
            return self.answer(400, api.error("empty_idempotency_key", "the Idempotency-Key header is empty: send "
                                              "a unique key per request, or no header"), close=True)  # the body unread
        with self.receiver.holding(caller.id) as held:  # its body's bytes count until it is answered
            try:
                body = await self.receiver.read(request, who, peer, held)
            except Unadmitted as exc:
                return self.unadmitted(exc)
            except TooLarge as exc:
                return self.too_large(exc.read)
            except ClientDisconnect:
                return self.answer(400, api.error("bad_body", "the client went away before the body ended"))
            except Unauthenticated as exc:  # the signature does not cover this body
                return self.unauthenticated(str(exc))
            if (refusal := await self.signed(who, peer)) is not None:
                return refusal
            if idempotency_key is None:
                return await self.publish(await self.check(body, request, family, commune, caller), caller, None)
            fp = idempotency.fingerprint(line, request.headers.get("content-type", "").encode("latin-1"), body)
            claim = idempotency.idempotency_claim(caller.id, idempotency_key)
            if not self.claims.holds(claim) and (self.claims.live(idempotency.idempotency_scope(caller.id))
                                                 >= self.settings.idempotency_keys_per_source):
                REFUSED.labels("idempotency_keys").inc()
                return self.answer(429, api.error("idempotency_keys_exhausted",
                                                  "this source holds as many Idempotency-Keys as it may: retry later, "
                                                  "or send without a key"), retry_after=self.settings.retry_after_s)
            # checked before the key is claimed: its lease counts Kafka waits; a large body's check may wait its turn
            result = await self.check(body, request, family, commune, caller)
            try:
                said = await self.claims.claim(claim, fp, self.settings.claim_lease_s)
            except BrokerUnavailable:
                return self.unavailable()
            if said.outcome == "other_request":
                return self.answer(422, api.error("idempotency_key_reused",
                                                  "this Idempotency-Key was used with another request"))
            if said.outcome == "answered" and said.answer is not None:
                return self.replay(said.answer, result)
            if said.outcome == "in_flight" or said.ticket is None:
                return self.answer(409, api.error("in_progress", "a request with this Idempotency-Key is in progress"),
                                   retry_after=self.settings.retry_after_s)
            return await self.publish(result, caller, said.ticket)

    async def signed(self, who: Identified, peer: str) -> JSONResponse | None:
        """A signed request whose signature verified over the body: its nonce (once, on any instance), then its rate
        (a source over its rate, or holding as many nonces as its rate makes in their window, is refused before any
        claim). A replay takes none of the source's rate, and counts as a failed signature of the address that sent
        it, so an eavesdropper replaying an overheard request cannot lock the source out, and is soon refused unread."""
        if who.pending is None:
            return None
        nonce = idempotency.nonce_claim(who.pending.nonce)
        if (wait := self.limiter.wait(who.source_id, self.ticks())) > 0 or idempotency.nonces_spent(
                self.claims, nonce, idempotency.most_nonces(self.settings)):
            REFUSED.labels("rate_limited").inc()
            return self.answer(429, api.error("rate_limited", "this source is over its request rate"),
                               retry_after=max(wait, 1))
        try:
            said = await self.claims.claim(nonce, "", float(self.settings.signature_tolerance_s * 2))
        except BrokerUnavailable:
            return self.unavailable()
        if said.outcome != "won":
            self.receiver.failed_signature(peer)
            return self.unauthenticated("this signature was already used: sign each request afresh")
        return self.limited(who.source_id)  # rarely refused here: only by requests taken while the claim ran

    async def check(self, body: bytes, request: Request, family: Family | None, commune: str | None,
                    caller: Source) -> Refused | Publish:
        checking = partial(plan, body, request.headers.get("content-type", "application/json"), family=family,
                           commune=commune, caller=caller, raw_topic=self.raw_topic,
                           max_records=self.settings.max_records, max_record_bytes=self.settings.max_record_bytes,
                           max_canonical_bytes=self.settings.max_canonical_bytes,
                           intake_seals=self.settings.intake_seals,
                           traceparent=request.headers.get("traceparent"))
        # a large body is checked in a worker thread (about 1 s at the 10 MiB limit): the loop keeps answering the
        # other requests and the probes meanwhile; a small one inline (a thread hop costs more than it)
        if len(body) <= INLINE_CHECK_BYTES:
            return checking()
        if self.checking is None:
            self.checking = anyio.CapacityLimiter(CHECK_THREADS)
        return await anyio.to_thread.run_sync(checking, limiter=self.checking)

    def replay(self, stored: Stored, result: Refused | Publish) -> JSONResponse:
        """The key's first answer again, nothing published. Its body when this instance still keeps it; else the
        answer rebuilt from this retry (the same request, by the fingerprint) if it is the first one (by digest);
        else the first's status and outline, its lists empty, said by `Idempotent-Lists: omitted`."""
        if stored.body is None:
            rebuilt = result.answer
            if stored.matches(rebuilt):
                return self.answer(rebuilt.status, rebuilt.body, replayed=True)
            outline = self.answer(stored.status, stored.answer().body, replayed=True)
            outline.headers["Idempotent-Lists"] = "omitted"
            return outline
        return self.answer(stored.status, stored.answer().body, replayed=True)

    async def publish(self, result: Refused | Publish, caller: Source, ticket: Ticket | None) -> JSONResponse:
        keep = float(self.settings.idempotency_ttl_s)
        if isinstance(result, Refused):
            log.info("gateway.rejected", source=caller.id, **rejected_counts(result))
            if ticket is not None:
                await self.claims.settle(ticket, result.answer, keep, sealed=False)
            return self.answer(result.answer.status, result.answer.body)
        sealing = self.claims.sealing(ticket, result.answer, keep) if ticket is not None else []
        try:
            await self.publisher.publish(result.records + sealing, ticket.until if ticket else float("inf"))
        except BrokerUnavailable:
            if ticket is not None:
                await self.claims.release(ticket)
            return self.unavailable()
        except BaseException:
            if ticket is not None:
                await self.claims.release(ticket)
            raise
        if ticket is not None:
            await self.claims.settle(ticket, result.answer, keep, sealed=True)
        count(result)
        log.info("gateway.accepted", source=caller.id, records=len(result.records))
        return self.answer(result.answer.status, result.answer.body)


def count(result: Publish) -> None:
    for fam, n in result.families.items():
        EVENTS.labels(fam.value).inc(n)


def request_line(request: Request) -> RequestLine:
    """What a signature covers besides the body, as the client sent it (headers back to their raw bytes)."""
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    return RequestLine(request.method.encode(), bytes(raw_path), bytes(request.scope.get("query_string", b"")),
                       request.headers.get(COMMUNE, "").encode("latin-1"),
                       request.headers.get(IDEMPOTENCY_KEY, "").encode("latin-1"))

