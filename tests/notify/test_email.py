"""The e-mail channel's message as the SMTP client puts it on the wire: exactly notify's headers, one recipient."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

import pytest
from aiosmtplib.email import extract_recipients, flatten_message

from schemas.notification import ChannelKind, NotificationRequest
from services.notify import rules
from services.notify.channels.base import DeliveryError, compose
from services.notify.channels.email import build_mail
from services.notify.subscribers import Registry
from tests.notify.events import directory, dossier

pytestmark = pytest.mark.unit
SENDER = "thong-bao@example.gov.vn"
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "Traceparent", "Content-Type", "Content-Transfer-Encoding",
           "MIME-Version", "Content-Language"]
"""What notify sets, in order (three by `set_content`)."""
NOW = datetime(2025, 11, 3, 1, 30, tzinfo=UTC)
INJECTED = "=?q?q?=0D=0AReply-To:_a@evil.vn=0D=0A=0D=0APay:_evil.vn?="
"""A dossier code intake accepts (printable ASCII, 57 characters): RFC 2047 words that decode to CR/LF."""


def email_request(locale: str = "en", code: str = "TL-251101-0002", address: str = "citizen@example.vn",
                  traceparent: str | None = None) -> NotificationRequest:
    event = dossier(status=2, code=code, locale=locale, applicant={"email": address, "preferred_locale": locale})
    if traceparent is not None:
        event = event.model_copy(update={"traceparent": traceparent})
    [r] = [x for x in rules.for_event(event, directory(), Registry()) if x.channel is ChannelKind.EMAIL]
    return r


def on_the_wire(request: NotificationRequest) -> tuple[list[str], str, list[str]]:
    """Header names, subject and envelope recipients of the mail as aiosmtplib flattens and sends it."""
    mail = build_mail(SENDER, compose(request, 2), NOW)
    parsed = message_from_bytes(flatten_message(mail), policy=default)
    return list(parsed.keys()), str(parsed["Subject"]), extract_recipients(mail)


@pytest.mark.parametrize("locale", ["en", "vi", "km"])
@pytest.mark.parametrize("code", [INJECTED, "=?utf-8?b?DQpCY2M6IGFAZXZpbC52bg==?=", "X=?==??=Y"])
def test_encoded_words_in_a_parameter_add_no_header_and_no_body(locale: str, code: str) -> None:
    """A parameter holding RFC 2047 encoded words of CR/LF gives a mail whose flattened form has exactly the headers
    notify set and a one-line subject with the text as sent; it gave a Reply-To and a body of the sender's choosing."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    names, subject, recipients = on_the_wire(email_request(locale, code, traceparent=parent))
    assert names == HEADERS
    assert "\r" not in subject and "\n" not in subject
    assert code in subject.replace("\u200b", "")
    assert recipients == ["citizen@example.vn"]


def test_a_plain_subject_is_sent_as_rendered_with_its_language() -> None:
    """Without encoded words the subject is the rendered one, unchanged; the mail says its language (its
    Content-Language was set before `set_content`, which drops every Content-* header: it was never sent)."""
    names, subject, _ = on_the_wire(email_request())
    assert subject == "Dossier TL-251101-0002 received" and names == HEADERS


def test_a_header_that_would_carry_a_line_break_is_refused_for_good() -> None:
    """A subject that reaches the channel with encoded words (not through `render`) is refused as unsafe_header,
    not retried: the last guard between a request and the SMTP client."""
    message = dataclasses.replace(compose(email_request(), 2), subject=f"Dossier {INJECTED}")
    with pytest.raises(DeliveryError) as refused:
        build_mail(SENDER, message, NOW)
    assert (refused.value.reason, refused.value.retryable) == ("unsafe_header", False)


def to(address: str) -> NotificationRequest:
    """The applicant's e-mail request with `address` as its (opened) recipient address."""
    r = email_request()
    return r.model_copy(update={"recipient": r.recipient.model_copy(update={"email": address})})


@pytest.mark.parametrize("address", [
    "me@x.vn, a@victim.vn, b@victim.vn", "me@x.vn;a@victim.vn", "friends: a@victim.vn, b@victim.vn;",
    "Me <me@x.vn>", "=?utf-8?q?x=0D=0ABcc:_evil@x.vn=0D=0A?= <me@x.vn>", "=?utf-8?q?me?=@x.vn", "me@x.vn (home)",
    '"a,b"@x.vn', "me@x.vn\r\nBcc: a@victim.vn", "me@x.vn a@victim.vn", "me@@x.vn", "@x.vn", "me@", "me", "me@.vn",
    "mé@x.vn",
])
def test_an_applicant_address_that_is_not_one_plain_addr_spec_is_refused_for_good(address: str) -> None:
    """A list, a group, a display name, an encoded word, a comment, a quoted or malformed address: refused as
    invalid_email, never retried, the address in no reason or message; a list reached every mailbox in it."""
    with pytest.raises(DeliveryError) as refused:
        build_mail(SENDER, compose(to(address), 2), NOW)
    assert (refused.value.reason, refused.value.retryable) == ("invalid_email", False)
    assert str(refused.value) == "invalid_email" and "x.vn" not in repr(refused.value)


@pytest.mark.parametrize("address", ["citizen@example.vn", "tran.van-minh+dvc@mail.example.com.vn", "A_1@X-Y.VN"])
def test_a_plain_address_is_the_one_recipient(address: str) -> None:
    """One addr-spec is the mail's only recipient, as given."""
    mail = build_mail(SENDER, compose(to(address), 2), NOW)
    assert extract_recipients(mail) == [address] and str(mail["To"]) == address


def test_a_mail_is_dated_in_vietnam_time_as_rfc_5322_requires() -> None:
    """`Date` (required by RFC 5322 beside `From`) is the send's time in +07:00; the mail had none."""
    mail = build_mail(SENDER, compose(email_request(), 2), NOW)
    parsed = message_from_bytes(flatten_message(mail), policy=default)
    assert parsed["Date"] == "Mon, 03 Nov 2025 08:30:00 +0700"
    assert parsed["Date"].datetime == NOW
