"""Which Zalo ZNS template a message goes by: the ids Zalo gave the templates registered for each kind of
notification and language (`NOTIFY_ZNS_TEMPLATES_FILE`, TOML; ADR 0041).

A ZNS message is a template Zalo approved beforehand, one language each, filled with parameters: Zalo assigns the
template's id. These ids were fixed in the code (`cb-100`...), the local fake provider's, so no deployment could
name the templates it registered, and a Khmer or English citizen on Zalo could only get the Vietnamese one. The
file names them per kind and per language:

    [templates]
    dossier_accepted = { vi = "231456", km = "231457", en = "231458" }
    payment_requested = { vi = "231460" }

    [payment_without_fees]   # a payment request whose event lists no fee: the template without an amount
    vi = "231470"

A language without its own template gets the kind's Vietnamese one, as `templates.render` falls back for texts. A
message with no template at all (a kind not listed; a payment without fees and no `payment_without_fees`: the
payment template would say "0 VND") is not sent by ZNS: `ZaloZns` sends it by SMS when the phone is known, else
dead-letters it as `zns_no_template`, to be replayed once the template is registered (`notify-dlq replay`).
Without the file, the local fake provider's ids are used for every kind.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from schemas.codes import Locale
from schemas.notification import NotificationKind
from services.notify.templates import fee_unknown

TemplateId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""As Zalo numbers its templates (digits), or the local ids; nothing that could change the request's meaning."""
NO_TEMPLATE = "zns_no_template"
"""The reason a message ZNS has no template for is refused, before any call (then SMS, or a dead letter)."""


class ZnsTemplates(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    templates: dict[NotificationKind, dict[Locale, TemplateId]] = Field(
        default_factory=dict, description="Per kind of notification, the template id of each language registered")
    payment_without_fees: dict[Locale, TemplateId] = Field(
        default_factory=dict, description="A payment request that names no fee: per language, its template id")

    def template_for(self, kind: NotificationKind, locale: Locale, params: dict[str, str]) -> str | None:
        """The template id for a message of `kind` in `locale` (the Vietnamese one when `locale` has none), or None
        when no template fits it."""
        by_locale = self.payment_without_fees if fee_unknown(kind, params) else self.templates.get(kind, {})
        return by_locale.get(locale) or by_locale.get(Locale.VI)


LOCAL = ZnsTemplates(templates={k: {Locale.VI: f"cb-{i + 100}"} for i, k in enumerate(NotificationKind)},
                     payment_without_fees={Locale.VI: f"cb-{len(NotificationKind) + 100}"})
"""The local fake provider's ids (`services.notify.fake_providers` takes any), used without the file."""


def load_zns_templates(path: Path | None) -> ZnsTemplates:
    """The file's templates (a ValidationError names what is wrong: an unknown kind or language, an id of another
    shape), or `LOCAL` without one."""
    if path is None:
        return LOCAL
    return ZnsTemplates.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))


def on_this_host(url: str) -> bool:
    """Whether `url` names this machine (the local fake provider), where the local ids are right."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host in ("localhost", "::1") or (host or "").startswith("127.")
