"""An event sealed under the gateway's stand-in keys is exactly as long as intake's sealed event, and sealing adds at
most `MOST_SEALING_ADDS` to an event: what the gateway's size check of canonical events rests on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import wire
from schemas.events import Family
from services.intake.normalise import normalise
from services.intake.outcome import Accepted
from services.privacy.applicant import seal_event
from services.privacy.sizing import MOST_SEALING_ADDS, sealed_as_intake
from tests.privacy.keys import keyring
from tests.samples import canonical_dossier

pytestmark = pytest.mark.unit
TEXT = "aệĐ\"\\ 😀"


def event_of(applicant: dict[str, Any]) -> Any:
    """The dossier event intake reads from a sample record with `applicant`, before sealing."""
    outcome = normalise(Family.DOSSIER, orjson.dumps(canonical_dossier(applicant=applicant)), [], 1024 * 1024)
    assert isinstance(outcome, Accepted), outcome
    return outcome.event


applicants = st.fixed_dictionaries({
    "name": st.text(TEXT, max_size=200), "address": st.text(TEXT, max_size=500),
    "phone": st.sampled_from([None, "0987654321", "+84 912 345 678", "-", "0000000000"]),
    "email": st.sampled_from([None, "minh@example.vn", "N/A"]),
    "id_number": st.sampled_from([None, "001099012345", "000000000000"]),
    "zalo_user_id": st.sampled_from([None, "zalo1234", "-"]),
    "preferred_locale": st.sampled_from(["vi", "km", "en"])})


@settings(max_examples=200, deadline=None)
@given(applicants)
def test_the_stand_in_seals_to_intakes_size(applicant: dict[str, Any]) -> None:
    """Any applicant (every UTF-8 width, JSON escapes, contacts that reach nobody, no identifier at all): the event
    sealed under stand-in keys encodes to as many bytes as the one intake's keyring seals, and sealing added at most
    `MOST_SEALING_ADDS`."""
    event = event_of(applicant)
    clear, intakes = wire.encode(event), wire.encode(seal_event(keyring(), event)[0])
    assert len(wire.encode(sealed_as_intake(event)).value) == len(intakes.value)
    assert len(intakes.value) - len(clear.value) <= MOST_SEALING_ADDS


def test_a_long_applicant_is_within_the_bound() -> None:
    """The longest name and address in 4-byte characters, every identifier long: sealing adds less than
    `MOST_SEALING_ADDS` (1,225 bytes here: each token a third longer than its value)."""
    emoji = "😀"
    event = event_of({"name": emoji * 200, "address": emoji * 500, "phone": "+84 912 345 678 901",
                      "email": "a" * 240 + "@example.vn", "id_number": "001099012345", "zalo_user_id": "z" * 64})
    added = len(wire.encode(sealed_as_intake(event)).value) - len(wire.encode(event).value)
    assert 1000 < added <= MOST_SEALING_ADDS
