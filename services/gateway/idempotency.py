"""`Idempotency-Key` and signature nonces as claims (`services.gateway.claims`): what is claimed, and how a
request is recognised as the same one.

Keys are scoped by source: `idem:<source id>:<SHA-256 of the key>` (the key is the integrator's text: it is not kept
in clear on the claims topic for its 48 hours, but a key of little entropy, a dossier code or a phone, can be found
again by hashing every candidate; integrators are told to send random keys, docs/integrators.md). A retry is the same
request when its method, path, query, commune header, content type and body are the same (`fingerprint`; the
signature and its timestamp are not part of it: a retry is signed afresh). Nonces are
`nonce:<source id>:<signature>`, held for the signature's validity window, so a signature is accepted once, on
any instance. How many a source holds is bounded by what its rate makes in that window (`most_nonces`): requests
sent at once all pass the rate's check while the first one's claim is on its way to Kafka, and each held a nonce
for the window, 202 or 429 alike (audit of memory and cardinality: 20 at once every second made 600 nonces where
the rate allowed 21).
"""

from __future__ import annotations

import hashlib
import math

from services.gateway.auth import RequestLine
from services.gateway.claims import PRUNE_EVERY_S, Claims, scope
from services.gateway.settings import GatewaySettings


def idempotency_claim(source_id: str, key: str) -> str:
    return f"{idempotency_scope(source_id)}:{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()}"


def idempotency_scope(source_id: str) -> str:
    """What a source's Idempotency-Keys count against (`claims.scope`, `GATEWAY_IDEMPOTENCY_KEYS_PER_SOURCE`)."""
    return f"idem:{source_id}"


def nonce_claim(nonce: str) -> str:
    return f"nonce:{nonce}"


def most_nonces(settings: GatewaySettings) -> int:
    """Nonces one source may hold at once: what its rate makes while one is held (twice the signature tolerance),
    and until the table is next pruned of the expired ones (`claims.PRUNE_EVERY_S`), so a source within its rate
    never reaches it."""
    window_s = 2 * settings.signature_tolerance_s + PRUNE_EVERY_S
    return settings.rate_burst + math.ceil(settings.rate_per_s * window_s)


def nonces_spent(claims: Claims, nonce: str, most: int) -> bool:
    """Whether the source of `nonce` (`nonce_claim`) holds `most` nonces already; a nonce it holds (a replay) is not
    refused here: its claim finds it used."""
    return not claims.holds(nonce) and claims.live(scope(nonce) or nonce) >= most


def fingerprint(line: RequestLine, content_type: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (line.method, line.path, line.query, line.commune, content_type):
        digest.update(hashlib.sha256(part).digest())  # fixed-size parts: no two requests share a concatenation
    digest.update(body)
    return digest.hexdigest()
