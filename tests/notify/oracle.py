"""What the fake providers must accept for the tests' dossier events, derived from the events, not from `rules`.

`events.dossier` makes an accepted dossier (status 2) in province 08 whose applicant has a phone and no Zalo
account. By the documented rules (README, `rules.RULES`' docstrings) such an event asks for exactly two requests:
an SMS to the applicant naming the dossier, and a webhook to the conftest's subscriber prov-08 (dossier status
changes of province 08) carrying the event; no e-mail. A fault test compares what the providers accepted with this,
so a rule that drops or adds a recipient fails it instead of shrinking or growing the expectation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from schemas.codes import DossierStatus
from schemas.dossier import DossierStatusChanged
from services.notify.fake_providers import FakeProviders
from tests.notify.events import PROVINCE

SMS, HOOK = "/sms", "/hooks/prov-08"
CODE = re.compile(r"\bD-[A-Z]+-\d+\b")
"""A dossier code as the fault tests spell them (D-REB-12): what an SMS text names."""

Sends = Counter[tuple[str, str]]
"""(provider path, what the request is about: the dossier code an SMS names, the event id a webhook carries)."""


def expected_sends(events: Iterable[DossierStatusChanged], zns_unreachable: bool = False) -> Sends:
    """One SMS per dossier code and one webhook per event id. An applicant with a Zalo account is asked by ZNS first:
    only when ZNS cannot be reached (`zns_unreachable`: the test's ZNS address answers nothing) is their message the
    SMS fallback, naming the dossier like any other."""
    want: Sends = Counter()
    for e in events:
        a = e.data.applicant
        assert e.data.status == DossierStatus.ACCEPTED and e.province == PROVINCE, "the oracle knows only these"
        assert getattr(a, "phone", None), "an applicant with a phone"
        assert zns_unreachable or not getattr(a, "zalo_user_id", None), "a Zalo account: ZNS would be asked first"
        assert len(CODE.findall(e.data.dossier_code)) == 1, e.data.dossier_code
        want[(SMS, e.data.dossier_code)] += 1
        want[(HOOK, e.id)] += 1
    return want


def accepted_sends(fake: FakeProviders) -> Sends:
    """What the providers accepted, one entry per Idempotency-Key (a second key for one message counts twice)."""
    got: Sends = Counter()
    for r in fake.accepted.values():
        if r.path == SMS:
            got[(SMS, ",".join(CODE.findall(str(r.body.get("text", "")))))] += 1
        elif r.path.startswith("/hooks/"):
            got[(r.path, str(r.body["event"].get("id")))] += 1
        else:
            got[(r.path, "")] += 1
    return got


def all_sent(fake: FakeProviders, want: Sends) -> Callable[[], bool]:
    """A predicate for `eventually`: every expected send accepted (else how many are missing)."""

    def check() -> bool:
        missing = want - accepted_sends(fake)
        assert not missing, f"{sum(missing.values())} of {sum(want.values())} sends not yet accepted"
        return True

    return check


def sms_accepted(fake: FakeProviders) -> int:
    return sum(r.path == SMS for r in fake.accepted.values())


def requests_per_key(fake: FakeProviders) -> Counter[str]:
    """Successful requests per Idempotency-Key, first and repeated, for every key the providers saw (not only the
    expected ones)."""
    return Counter({k: fake.successes[k] + fake.replays[k] for k in set(fake.accepted) | set(fake.replays)})
