"""A ``MailMessage`` as an RFC 5322 message: headers, a text part and an HTML alternative."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr

import email_validator

from engage_core.ports import MailMessage

DEFAULT_SENDER = "engage-suite <no-reply@localhost>"


def parse_sender(text: str) -> str:
    """``ENGAGE_MAIL_FROM``: an address, with or without a display name
    (``engage <no-reply@example.com>``); ValueError otherwise."""
    found = getaddresses([text.strip()])
    if len(found) != 1 or not found[0][1]:
        raise ValueError("must be one address such as 'engage <no-reply@example.com>'")
    name, address = found[0]
    try:
        checked = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"is not a valid address: {exc}") from None
    return str(Address(display_name=name, addr_spec=checked.normalized))


def sender_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


def transmittable(address: str) -> str:
    """``address`` with an international domain as its A-label (``ada@xn--exmple-cua.com``),
    which every mail server takes: only a non-ASCII mailbox name (``jürgen@``) needs a
    server that offers SMTPUTF8 (RFC 6531)."""
    if address.isascii():
        return address
    try:
        checked = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return address
    return checked.ascii_email or address


def as_email(message: MailMessage, sender: str, at: datetime) -> EmailMessage:
    """The message to transmit, with ``Date``, ``Message-ID`` (the same on every
    attempt: made from ``message.id``) and ``From``."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = transmittable(message.to.value)
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(at)
    mail["Message-ID"] = f"<{message.id}@{sender_domain(sender)}>"
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    mail.set_content(message.text)
    mail.add_alternative(message.html, subtype="html")
    return mail
