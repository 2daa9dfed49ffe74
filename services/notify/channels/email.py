"""E-mail over SMTP. The Message-ID is derived from the notification id, so receivers can de-duplicate.

A mail with a trace carries it in a `Traceparent:` header (the value of the HTTP channels' `traceparent`,
`base.outgoing_traceparent`): the Message-ID stays the notification id's alone, so de-duplication by
Message-ID does not depend on tracing.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from services.notify.channels.base import DeliveryError, Message, Receipt, outgoing_traceparent


def build_mail(sender: str, message: Message) -> EmailMessage:
    """The mail for `message`: its headers are the ones set here, whatever the request holds."""
    to = message.request.recipient.email
    if not to:
        raise DeliveryError("no_email", retryable=False)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to, message.subject
    mail["Message-ID"] = f"<{message.request.notification_id}@commune-bus>"
    if (parent := outgoing_traceparent(message.request)) is not None:
        mail["Traceparent"] = parent
    mail.set_content(message.text)
    mail["Content-Language"] = message.locale.value  # after set_content, which drops every Content-* header
    # the header parser decodes encoded words: a value that decoded to a line break would be written as one
    if any("\r" in str(value) or "\n" in str(value) for value in mail.values()):
        raise DeliveryError("unsafe_header", retryable=False)
    return mail


class Smtp:
    def __init__(self, host: str, port: int, sender: str, timeout_s: float) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout_s

    async def send(self, message: Message) -> Receipt:
        mail = build_mail(self.sender, message)
        try:
            await aiosmtplib.send(mail, hostname=self.host, port=self.port, timeout=self.timeout)
        except aiosmtplib.SMTPRecipientsRefused:
            raise DeliveryError("smtp_recipient_refused", retryable=False) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(type(exc).__name__) from None
        return Receipt(mail["Message-ID"], via="email")

    async def close(self) -> None: ...
