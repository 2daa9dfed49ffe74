"""E-mail over SMTP. The Message-ID is derived from the notification id, so receivers can de-duplicate.

A mail with a trace carries it in a `Traceparent:` header (the value of the HTTP channels' `traceparent`,
`base.outgoing_traceparent`): the Message-ID stays the notification id's alone, so de-duplication by
Message-ID does not depend on tracing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from schemas.times import VIETNAM
from services.notify.channels.base import DeliveryError, Message, Receipt, outgoing_traceparent

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDR_SPEC = re.compile(rf"(?=[^@]{{1,64}}@)(?=.{{3,254}}$){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+", re.ASCII)
"""One plain ASCII addr-spec (RFC 5322 dot-atom local part, a dotted host name): no list, group, display name,
comment, quoted string or address literal. Anything else in a `To` header is parsed as several recipients."""


def single_address(value: str) -> Address:
    """`value` as the one recipient, or a non-retryable `invalid_email` (the reason never holds the address)."""
    if "=?" in value or not ADDR_SPEC.fullmatch(value):  # no encoded word: a header parser would decode it
        raise DeliveryError("invalid_email", retryable=False, local=True)
    try:
        return Address(addr_spec=value)
    except (ValueError, IndexError, MessageError):
        raise DeliveryError("invalid_email", retryable=False, local=True) from None


def build_mail(sender: str, message: Message, now: datetime) -> EmailMessage:
    """The mail for `message`, dated `now` (in Vietnam time): its headers are the ones set here, whatever the request
    holds, and its one recipient is the request's address, which must be a single plain addr-spec. `Date` is the one
    header RFC 5322 requires besides `From`; without it (aiosmtplib adds none) strict receivers and spam filters
    marked the mail down, and mail clients sorted it by arrival (notify audit)."""
    to = message.request.recipient.email
    if not to:
        raise DeliveryError("no_email", retryable=False, local=True)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, single_address(to), message.subject
    mail["Date"] = format_datetime(now.astimezone(VIETNAM))
    mail["Message-ID"] = f"<{message.request.delivery_key}@commune-bus>"
    if (parent := outgoing_traceparent(message.request)) is not None:
        mail["Traceparent"] = parent
    mail.set_content(message.text)
    mail["Content-Language"] = message.locale.value  # after set_content, which drops every Content-* header
    # the header parser decodes encoded words: a value that decoded to a line break would be written as one
    if any("\r" in str(value) or "\n" in str(value) for value in mail.values()):
        raise DeliveryError("unsafe_header", retryable=False, local=True)
    return mail


class Smtp:
    """Sends each mail in one SMTP session, the whole call within `timeout_s` (NOTIFY_PROVIDER_TIMEOUT_S), as the HTTP
    channels' requests are: aiosmtplib's `timeout` bounds each command alone (connect, greeting, EHLO, MAIL, RCPT,
    DATA, QUIT), so a server answering each just in time held a call ~7 times as long, past the revocation's drain,
    which counts on a call ending within the provider timeout (ADR 0012). Once the mail is accepted, a slow or failed
    QUIT is no failure of the call (sent again, it would arrive twice)."""

    def __init__(self, host: str, port: int, sender: str, timeout_s: float) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout_s

    async def send(self, message: Message) -> Receipt:
        mail = build_mail(self.sender, message, datetime.now(UTC))
        deadline = asyncio.get_running_loop().time() + self.timeout
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=self.timeout)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await client.connect()
                    await client.send_message(mail)
            except aiosmtplib.SMTPRecipientsRefused:
                raise DeliveryError("smtp_recipient_refused", retryable=False) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise DeliveryError(type(exc).__name__) from None
            # accepted: QUIT is a courtesy within what is left of the call's time, never the call's failure
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await client.quit()
        finally:
            client.close()
        return Receipt(mail["Message-ID"], via="email")

    async def close(self) -> None: ...
