"""The mail an account receives: links with one-time tokens, and security notices.

Every message is queued in the outbox within the unit of work of the change that
causes it, so the change and its mail commit together; a sender delivers it
afterwards (``mail_delivery``), and a mail server that is down delays it, never
the request. Tokens are 256 random bits, URL-safe; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

from attrs import define, frozen

from engage_core import mail_templates
from engage_core.errors import InvalidToken
from engage_core.mail_templates import Branding
from engage_core.model import Client, Email, OneTimeToken, TokenPurpose, User
from engage_core.ports import Clock, MailMessage, MailQueue, OneTimeTokenRepository, UnitOfWork

__all__ = [
    "INVALID_TOKEN",
    "LINK_TOKEN_PATTERN",
    "TOKEN_BYTES",
    "AccountMail",
    "TokenLifetimes",
    "hash_link_token",
    "link_token_hash",
]

TOKEN_BYTES = 32
# The form of every token engage issues (token_urlsafe(32) is 43 of these).
LINK_TOKEN_PATTERN = "^[A-Za-z0-9_-]{16,128}$"
_TOKEN = re.compile(LINK_TOKEN_PATTERN[1:-1], re.ASCII)
INVALID_TOKEN = "this link is not valid: it was used already, it expired, or it was never issued"


@frozen(kw_only=True)
class TokenLifetimes:
    verify_email: timedelta = timedelta(hours=48)
    reset_password: timedelta = timedelta(hours=1)
    change_email: timedelta = timedelta(hours=24)

    def of(self, purpose: TokenPurpose) -> timedelta:
        lifetime: timedelta = getattr(self, purpose.value)
        return lifetime


def hash_link_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def link_token_hash(raw: object) -> str:
    """The stored form of a token a client sent back; ``InvalidToken`` for
    anything that cannot be one of ours."""
    if not isinstance(raw, str) or not _TOKEN.fullmatch(raw):
        raise InvalidToken(INVALID_TOKEN)
    return hash_link_token(raw)


def _never() -> None:
    return None


@define(kw_only=True)
class AccountMail:
    tokens: OneTimeTokenRepository
    outbox: MailQueue
    clock: Clock
    uow: UnitOfWork
    branding: Branding
    lifetimes: TokenLifetimes = TokenLifetimes()
    # Told once queued mail has committed, so a sender in this process starts at once.
    wake: Callable[[], None] = _never

    async def issue(self, user_id: UUID, email: Email, purpose: TokenPurpose) -> str:
        """A new token for a link; only its hash is stored."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self.clock.now()
        await self.tokens.add(
            OneTimeToken(
                token_hash=hash_link_token(token),
                purpose=purpose,
                user_id=user_id,
                email=email,
                created_at=now,
                expires_at=now + self.lifetimes.of(purpose),
            )
        )
        return token

    async def drop_unsent_to(self, email: Email) -> None:
        """Drop the messages to ``email`` not sent yet (an account deleted), with the
        unit of work in progress."""
        await self.outbox.drop_unsent(email.value)

    async def queue(self, message: MailMessage) -> None:
        """Queue ``message`` with the unit of work in progress."""
        await self.outbox.enqueue(message, self.clock.now())

        async def wake() -> None:
            self.wake()

        await self.uow.after_commit(wake)

    # --- what the account flows send -------------------------------------------------

    async def send_verification(self, user: User) -> None:
        async with self.uow.atomic():
            token = await self.issue(user.id, user.email, TokenPurpose.VERIFY_EMAIL)
            await self.queue(mail_templates.verification(user.email, self.branding, token))

    async def signed_up(self, user: User) -> None:
        await self.send_verification(user)

    async def new_device(self, user: User, client: Client) -> None:
        """A sign-in from a device the account has not been used on before."""
        await self.queue(
            mail_templates.new_device(
                user.email,
                self.branding,
                device=client.user_agent or "an unknown browser",
                address=client.ip or "an unknown address",
                at=self.clock.now().strftime("%Y-%m-%d %H:%M UTC"),
            )
        )

    async def password_changed(self, user: User) -> None:
        """After a password change: the links sent before it stop working, and the
        account's address hears of it."""
        async with self.uow.atomic():
            await self.tokens.revoke(
                user.id, (TokenPurpose.RESET_PASSWORD, TokenPurpose.CHANGE_EMAIL), self.clock.now()
            )
            await self.queue(mail_templates.password_changed(user.email, self.branding))
