"""Zalo ZNS template ids from `NOTIFY_ZNS_TEMPLATES_FILE` (ADR 0041), against the real local fake provider: each
kind and language its registered template, the Vietnamese one for a language without its own, a payment without
fees its own template without an amount, and a message no template fits by SMS (or a dead letter without a phone).
The ids were fixed in the code (`cb-100`...): no deployment could name the templates Zalo gave it, and Khmer and
English citizens got the Vietnamese template; a payment without fees said "0 VND" (notify audit, left alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.notification import ChannelKind, NotificationKind
from services.notify import rules
from services.notify.channels.base import DeliveryError, compose
from services.notify.channels.http import HttpClient, SmsGateway, ZaloZns
from services.notify.fake_providers import FakeProviders
from services.notify.settings import NotifySettings
from services.notify.subscribers import Registry
from services.notify.zns import LOCAL, NO_TEMPLATE, ZnsTemplates, load_zns_templates, on_this_host
from tests.notify.events import directory, dossier

pytestmark = pytest.mark.unit

FILE = """
[templates]
dossier_accepted = { vi = "231456", km = "231457" }
payment_requested = { vi = "231460", en = "231462" }

[payment_without_fees]
km = "231471"
vi = "231470"
"""
FEES = [{"amount_vnd": 150000, "name": "Lệ phí"}]


@pytest.fixture
def templates(tmp_path: Path) -> ZnsTemplates:
    path = tmp_path / "zns.toml"
    path.write_text(FILE, encoding="utf-8")
    return load_zns_templates(NotifySettings(zns_templates_file=path).zns_templates_file)


async def sent(fake: FakeProviders, templates: ZnsTemplates, locale: str = "vi", status: int = 2, phone: bool = True,
               **data: Any) -> tuple[str, dict[str, Any]]:
    """The path the provider got the message on, and what it got."""
    applicant = {"zalo_user_id": "z-1", "preferred_locale": locale, **({"phone": "0911111111"} if phone else {})}
    [r] = [x for x in rules.for_event(dossier(status=status, locale=locale, applicant=applicant, **data), directory(),
                                      Registry()) if x.channel is ChannelKind.ZALO]
    http = HttpClient(2)
    try:
        await ZaloZns(http, fake.url, SmsGateway(http, fake.url), templates).send(compose(r, 2))
    finally:
        await http.close()
    got = fake.accepted[r.notification_id]
    return got.path, got.body


@pytest.mark.parametrize("locale, template", [("vi", "231456"), ("km", "231457"), ("en", "231456")])
async def test_each_language_gets_its_template_or_the_vietnamese_one(fake: FakeProviders, templates: ZnsTemplates,
                                                                     locale: str, template: str) -> None:
    path, body = await sent(fake, templates, locale)
    assert (path, body["template_id"]) == ("/zns/send", template)
    assert body["template_data"]["dossier_code"] == "TL-251101-0002"


@pytest.mark.parametrize("locale, template", [("vi", "231470"), ("km", "231471"), ("en", "231470")])
async def test_a_payment_without_fees_has_its_own_template_and_no_amount(fake: FakeProviders, templates: ZnsTemplates,
                                                                        locale: str, template: str) -> None:
    path, body = await sent(fake, templates, locale, status=6)
    assert (path, body["template_id"]) == ("/zns/send", template)
    assert "amount" not in body["template_data"] and body["template_data"]["dossier_code"] == "TL-251101-0002"


async def test_a_payment_with_fees_names_the_amount(fake: FakeProviders, templates: ZnsTemplates) -> None:
    path, body = await sent(fake, templates, "en", status=6, fees=FEES)
    assert (path, body["template_id"], body["template_data"]["amount"]) == ("/zns/send", "231462", "150.000")


async def test_a_message_no_template_fits_goes_by_sms(fake: FakeProviders) -> None:
    """No template for the kind, or a payment without fees and no `payment_without_fees`: by SMS, whose text says it
    in the citizen's language without an amount; ZNS is not called."""
    only_accepted = ZnsTemplates(templates={NotificationKind.DOSSIER_ACCEPTED: {"vi": "1"}})
    path, body = await sent(fake, only_accepted, "km", status=6)
    assert path == "/sms" and " 0 " not in body["text"], body
    assert fake.requests == 1


async def test_without_a_phone_it_is_refused_before_any_call(fake: FakeProviders) -> None:
    with pytest.raises(DeliveryError) as refused:
        await sent(fake, ZnsTemplates(), phone=False)
    assert (refused.value.reason, refused.value.retryable, refused.value.local) == (NO_TEMPLATE, False, True)
    assert fake.requests == 0


@pytest.mark.parametrize("text", ['[templates]\nno_such_kind = { vi = "1" }', '[templates]\noverdue = { fr = "1" }',
                                  '[templates]\noverdue = { vi = "1 OR 1" }', '[templates]\noverdue = { vi = "" }',
                                  '[payment_without_fee]\nvi = "1"'])
def test_a_file_naming_what_does_not_exist_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "zns.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError):
        load_zns_templates(path)


def test_without_the_file_the_local_ids_cover_every_kind() -> None:
    assert load_zns_templates(None) is LOCAL
    assert all(LOCAL.template_for(k, "km", {"amount": "0"}) for k in NotificationKind)  # type: ignore[arg-type]
    assert on_this_host("http://127.0.0.1:8025") and on_this_host("http://localhost:1")
    assert not on_this_host("https://business.openapi.zalo.me") and not on_this_host("http://[::1")
