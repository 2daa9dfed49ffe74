"""Webhook bodies against the published JSON Schema of their `type`, as a receiver validating by type checks them;
and the opened applicant they may carry, which only webhooks carry: intake refuses it on a raw topic."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from schemas.dossier import DossierStatusChanged
from schemas.events import Family
from schemas.notification import ChannelKind, NotificationRequest
from services.intake.normalise import normalise
from services.intake.outcome import Accepted, Rejected
from services.notify import rules
from services.notify.personal import Opener
from services.notify.subscribers import Registry, Subscriber
from services.privacy.keyring import Keyring
from tests.notify.events import directory
from tests.privacy.keys import keyring
from tests.published import problems
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
APPLICANT = {"name": "Nguyễn Thị Lan", "id_number": "008123456789", "phone": "0912345678",
             "email": "lan@example.vn", "zalo_user_id": "z-8312470051", "address": "Thôn Nà Tàng, Thường Lâm",
             "preferred_locale": "vi"}


def _hooks(ring: Keyring) -> dict[str, NotificationRequest]:
    """The webhooks notify makes of one dossier event as intake publishes it (sealed), by subscriber."""
    raw = canonical_dossier("evt-web", status=2, applicant=APPLICANT)
    accepted = normalise(Family.DOSSIER, json.dumps(raw).encode(), keyring=ring)
    assert isinstance(accepted, Accepted)
    subs = [Subscriber.model_validate({"name": name, "url": "http://127.0.0.1:9/h", "secret": "x" * 16,
                                       "include_personal_data": personal})
            for name, personal in (("plain", False), ("personal", True))]
    hooks = [r for r in rules.for_event(accepted.event, directory(), Registry(subscribers=subs))
             if r.channel is ChannelKind.WEBHOOK]
    return {r.recipient.ref.removeprefix("subscriber:"): r for r in hooks}


async def _bodies(ring: Keyring) -> dict[str, dict[str, Any]]:
    """Each subscriber's body as the webhook channel posts it (after `Opener`, as the dispatcher calls it)."""
    opener = Opener(directory(), ring)
    return {name: orjson.loads((await opener(hook)).payload or "") for name, hook in _hooks(ring).items()}


async def test_webhook_bodies_validate_against_the_published_schema_of_their_type() -> None:
    """With and without include_personal_data, the body passes the committed schema of its `type` (formats
    asserted). Before: the opened applicant (clear fields and `subject`) matched neither published form, so a
    receiver validating by type refused every dossier webhook of a subscriber entitled to personal data."""
    bodies = await _bodies(keyring())
    assert set(bodies["personal"]["data"]["applicant"]) == {"subject", *APPLICANT}
    assert "applicant" not in bodies["plain"]["data"]
    for name, body in bodies.items():
        assert body["type"] == "vn.communebus.dossier.status-changed.v1"
        assert problems(body) == [], name
        DossierStatusChanged.model_validate(body)  # the model reads what the schema describes


async def test_a_webhook_body_of_an_erased_applicant_validates_too() -> None:
    """Once the applicant is erased the body goes without the applicant group, and still passes its schema."""
    ring = keyring()
    hooks = _hooks(ring)
    sealed = orjson.loads(hooks["personal"].payload or "")["data"]["applicant"]
    ring.forget(sealed["subject"], sealed["key_id"])
    body = orjson.loads((await Opener(directory(), ring)(hooks["personal"])).payload or "")
    assert "applicant" not in body["data"] and problems(body) == []


@pytest.mark.parametrize("sealing", [True, False], ids=["sealing", "sealing-off"])
async def test_intake_never_publishes_the_opened_form(sealing: bool) -> None:
    """A subscriber's webhook body sent back to intake as a raw record (its applicant opened, with the subject) is
    refused as the subject always was on a raw topic: no canonical topic carries the webhooks' form, whether intake
    seals (it would seal it again) or not (it would publish it as it came)."""
    body = (await _bodies(keyring()))["personal"]
    outcome = normalise(Family.DOSSIER, json.dumps(body).encode(), keyring=keyring() if sealing else None)
    assert isinstance(outcome, Rejected)
    assert (outcome.rejection.reason.value, outcome.rejection.field) == ("unknown_field", "data.applicant.subject")
