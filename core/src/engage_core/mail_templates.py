"""The text of every mail engage-suite sends, in plain text and HTML.

Values that come from users (addresses) are escaped in the HTML; links are
built by the caller from ``ENGAGE_PUBLIC_URL`` and a token of URL-safe characters.
"""

from __future__ import annotations

import html
from string import Template

from attrs import frozen

from engage_core.model import Email
from engage_core.ports import MailMessage

__all__ = [
    "CONFIRM_NEW_EMAIL",
    "EMAIL_CHANGE_NOTICE",
    "NEW_DEVICE",
    "NO_ACCOUNT",
    "PASSWORD_CHANGED",
    "PASSWORD_RESET",
    "RESET",
    "VERIFY",
    "Branding",
    "confirm_new_email",
    "email_change_notice",
    "new_device",
    "no_account",
    "password_changed",
    "password_reset",
    "password_was_reset",
    "verification",
]


@frozen
class Branding:
    """Who the mail is from, as users know it, and the base of its links."""

    app_name: str
    public_url: str

    def link(self, path: str) -> str:
        return f"{self.public_url.rstrip('/')}{path}"


_HTML = Template("""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>$subject</title></head>
<body style="font-family: sans-serif; line-height: 1.5; color: #1f2328;
max-width: 36em">
$body
</body>
</html>
""")


def _paragraphs(text: str, values: dict[str, str], link: str | None) -> str:
    """The plain text as HTML paragraphs: each value escaped, the link a button."""
    out = []
    for paragraph in text.split("\n\n"):
        if paragraph == "$link" and link is not None:
            href = html.escape(link, quote=True)
            out.append(f'<p><a href="{href}">{html.escape(values["action"])}</a></p>')
            out.append(f'<p style="font-size: 0.85em; word-break: break-all">{href}</p>')
            continue
        escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
        out.append("<p>" + Template(paragraph).safe_substitute(escaped) + "</p>")
    return "\n".join(out)


def _message(
    to: Email,
    brand: Branding,
    subject: str,
    text: str,
    *,
    link: str | None = None,
    action: str = "",
    **values: str,
) -> MailMessage:
    fields = {"app": brand.app_name, "link": link or "", "action": action, **values}
    subject_text = Template(subject).substitute(fields)
    body = Template(text).substitute(fields)
    page = _HTML.substitute(subject=html.escape(subject_text), body=_paragraphs(text, fields, link))
    return MailMessage(to=to, subject=subject_text, text=body, html=page, link=link)


_SIGN_OFF = "— $app"

VERIFY = (
    """Hello,

please confirm that $email is your address for $app by opening this link
within 48 hours:

$link

If you did not sign up for $app, ignore this message: nothing more will happen.

"""
    + _SIGN_OFF
)

RESET = (
    """Hello,

someone (we hope you) asked to reset the password of the $app account for
$email. To choose a new password, open this link within an hour:

$link

If you did not ask for this, ignore this message: your password stays as it is.

"""
    + _SIGN_OFF
)

NO_ACCOUNT = (
    """Hello,

someone asked to reset the password of the $app account for $email, but no
$app account uses this address. If it was you, you may have signed up with
another one.

If you did not ask for this, ignore this message.

"""
    + _SIGN_OFF
)

CONFIRM_NEW_EMAIL = (
    """Hello,

to make $email the address of your $app account (instead of $old_email),
open this link within 24 hours:

$link

If you did not ask for this, ignore this message: the address stays as it is.

"""
    + _SIGN_OFF
)

EMAIL_CHANGE_NOTICE = (
    """Hello,

someone signed in to your $app account asked to change its address from
$email to $new_email. The change takes effect once it is confirmed from the
new address.

If this was not you, change your password now, at $site.

"""
    + _SIGN_OFF
)

PASSWORD_CHANGED = (
    """Hello,

the password of your $app account ($email) was just changed, and every other
session was signed out.

If this was not you, reset your password at once from $site and tell us.

"""
    + _SIGN_OFF
)

PASSWORD_RESET = (
    """Hello,

the password of your $app account ($email) was just reset through a link
sent to this address, and every session was signed out.

If this was not you, reset your password again at once from $site and tell us.

"""
    + _SIGN_OFF
)


NEW_DEVICE = (
    """Hello,

your $app account ($email) was just signed in to from a device it had not been
used on before:

$device, from $address, at $at.

If this was you, there is nothing to do. If not, change your password at once
and end that session on the sessions page: $site

"""
    + _SIGN_OFF
)


def verification(to: Email, brand: Branding, token: str) -> MailMessage:
    return _message(
        to,
        brand,
        "Verify your email address for $app",
        VERIFY,
        link=brand.link(f"/verify-email#token={token}"),
        action="Verify my address",
        email=to.value,
    )


def password_reset(to: Email, brand: Branding, token: str) -> MailMessage:
    return _message(
        to,
        brand,
        "Reset your $app password",
        RESET,
        link=brand.link(f"/reset-password#token={token}"),
        action="Choose a new password",
        email=to.value,
    )


def no_account(to: Email, brand: Branding) -> MailMessage:
    return _message(to, brand, "Password reset for $app", NO_ACCOUNT, email=to.value)


def confirm_new_email(to: Email, old: Email, brand: Branding, token: str) -> MailMessage:
    return _message(
        to,
        brand,
        "Confirm your new email address for $app",
        CONFIRM_NEW_EMAIL,
        link=brand.link(f"/confirm-email#token={token}"),
        action="Confirm my new address",
        email=to.value,
        old_email=old.value,
    )


def email_change_notice(to: Email, new: Email, brand: Branding) -> MailMessage:
    return _message(
        to,
        brand,
        "Your $app email address is being changed",
        EMAIL_CHANGE_NOTICE,
        email=to.value,
        new_email=new.value,
        site=brand.link("/"),
    )


def password_changed(to: Email, brand: Branding) -> MailMessage:
    return _message(
        to,
        brand,
        "Your $app password was changed",
        PASSWORD_CHANGED,
        email=to.value,
        site=brand.link("/forgot-password"),
    )


def new_device(to: Email, brand: Branding, *, device: str, address: str, at: str) -> MailMessage:
    return _message(
        to,
        brand,
        "New sign-in to your $app account",
        NEW_DEVICE,
        email=to.value,
        device=device,
        address=address,
        at=at,
        site=brand.link("/sessions"),
    )


def password_was_reset(to: Email, brand: Branding) -> MailMessage:
    return _message(
        to,
        brand,
        "Your $app password was reset",
        PASSWORD_RESET,
        email=to.value,
        site=brand.link("/forgot-password"),
    )
