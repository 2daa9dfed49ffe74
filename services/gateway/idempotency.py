"""`Idempotency-Key` and signature nonces as claims (`services.gateway.claims`): what is claimed, and how a
request is recognised as the same one.

Keys are scoped by source: `idem:<source id>:<SHA-256 of the key>` (the key is the integrator's text: it is not kept
in clear on the claims topic for its 48 hours, but a key of little entropy, a dossier code or a phone, can be found
again by hashing every candidate; integrators are told to send random keys, docs/integrators.md). A retry is the same
request when its method, path, query, commune header, content type and body are the same (`fingerprint`; the
signature and its timestamp are not part of it: a retry is signed afresh). Nonces are
`nonce:<source id>:<signature>`, held for the signature's validity window, so a signature is accepted once, on
any instance.
"""

from __future__ import annotations

import hashlib

from services.gateway.auth import RequestLine


def idempotency_claim(source_id: str, key: str) -> str:
    return f"{idempotency_scope(source_id)}:{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()}"


def idempotency_scope(source_id: str) -> str:
    """What a source's Idempotency-Keys count against (`claims.scope`, `GATEWAY_IDEMPOTENCY_KEYS_PER_SOURCE`)."""
    return f"idem:{source_id}"


def nonce_claim(nonce: str) -> str:
    return f"nonce:{nonce}"


def fingerprint(line: RequestLine, content_type: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (line.method, line.path, line.query, line.commune, content_type):
        digest.update(hashlib.sha256(part).digest())  # fixed-size parts: no two requests share a concatenation
    digest.update(body)
    return digest.hexdigest()
