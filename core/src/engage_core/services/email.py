"""Email flows (contract §7): verify the address, forget and reset the password,
change the address. Each link works once, before it expires.

Forgot-password answers the same, in the same time, whatever the address: both
paths run one transaction that queues one message (a reset link, or a note that
no account uses the address), and the sending happens later, elsewhere.
"""

from __future__ import annotations

import math
from datetime import timedelta

from attrs import define, frozen

from engage_core import mail_templates
from engage_core.errors import (
    Conflict,
    InvalidToken,
    RateLimited,
    ValidationFailed,
)
from engage_core.model import Email, Password, TokenPurpose, User
from engage_core.ports import (
    Clock,
    OneTimeTokenRepository,
    PasswordHasher,
    RateLimiter,
    UnitOfWork,
    UserRepository,
)
from engage_core.services.account_mail import INVALID_TOKEN, AccountMail, link_token_hash
from engage_core.services.auth import AuthService, Principal

__all__ = [
    "EmailFlowPolicy",
    "EmailFlows",
]

_ALL_PURPOSES = tuple(TokenPurpose)


@frozen(kw_only=True)
class EmailFlowPolicy:
    """How many mails may be asked for: per address for a reset link, per account for a
    verification link or an address change, and per client address (which may ask
    for several emails)."""

    forgot_per_email: int = 5
    forgot_per_address: int = 10
    forgot_window: timedelta = timedelta(hours=1)
    verify_requests_per_user: int = 5
    verify_request_window: timedelta = timedelta(hours=1)
    email_changes_per_user: int = 5
    email_change_window: timedelta = timedelta(hours=1)

    @classmethod
    def per_hour(cls, mails: int) -> EmailFlowPolicy:
        """``mails`` an hour per email or account, twice as many per client address."""
        return cls(
            forgot_per_email=mails,
            forgot_per_address=2 * mails,
            verify_requests_per_user=mails,
            email_changes_per_user=mails,
        )


@define(kw_only=True)
class EmailFlows:
    auth: AuthService
    mail: AccountMail
    users: UserRepository
    tokens: OneTimeTokenRepository
    hasher: PasswordHasher
    limiter: RateLimiter
    clock: Clock
    uow: UnitOfWork
    policy: EmailFlowPolicy = EmailFlowPolicy()

    # --- verification ----------------------------------------------------------------

    async def request_verification(self, principal: Principal) -> None:
        """Send a new verification link (none if the address is verified already)."""
        user = await self.auth.me(principal)
        if user.email_verified:
            return
        await self._limit(
            f"verify-request:{user.id}",
            self.policy.verify_requests_per_user,
            self.policy.verify_request_window,
            "too many verification mails asked for; check your inbox, or try again later",
        )
        await self.mail.send_verification(user)

    async def verify_email(self, token: object) -> None:
        """Mark the address the link was sent to as verified, if it is still the account's."""
        token_hash = link_token_hash(token)
        now = self.clock.now()
        async with self.uow.atomic():
            used = await self.tokens.use(token_hash, TokenPurpose.VERIFY_EMAIL, now)
            if used is None or not await self.users.mark_email_verified(
                used.user_id, used.email, now
            ):
                raise InvalidToken(INVALID_TOKEN)

    # --- a forgotten password ----------------------------------------------------------

    async def forgot_password(self, *, email: object, client_address: str) -> None:
        """Queue a reset link for the account with this address, if there is one."""
        try:
            address = Email(email)
        except ValidationFailed as exc:
            raise exc.renamed("email") from None
        window = self.policy.forgot_window
        await self._limit(
            f"forgot-address:{client_address}",
            self.policy.forgot_per_address,
            window,
            "too many password resets asked for from this address; try again later",
        )
        await self._limit(
            f"forgot-email:{address.canonical}",
            self.policy.forgot_per_email,
            window,
            "too many password resets asked for this email; check its inbox, or try again later",
        )
        user = await self.users.get_by_email(address.canonical)
        async with self.uow.atomic():
            if user is None:
                await self.mail.queue(mail_templates.no_account(address, self.mail.branding))
                return
            # Only the newest link works.
            await self.tokens.revoke(user.id, (TokenPurpose.RESET_PASSWORD,), self.clock.now())
            token = await self.mail.issue(user.id, user.email, TokenPurpose.RESET_PASSWORD)
            await self.mail.queue(
                mail_templates.password_reset(user.email, self.mail.branding, token)
            )

    async def reset_password(self, *, token: object, new_password: object) -> None:
        """Set a new password with a reset link; every session of the account ends,
        in the same transaction."""
        try:
            password = Password(new_password)
        except ValidationFailed as exc:
            raise exc.renamed("new_password") from None
        token_hash = link_token_hash(token)
        if (
            await self.tokens.find(token_hash, TokenPurpose.RESET_PASSWORD, self.clock.now())
            is None
        ):
            raise InvalidToken(INVALID_TOKEN)  # before hashing: a bad link costs no bcrypt
        new_hash = await self.hasher.hash(password)
        now = self.clock.now()
        async with self.uow.atomic():
            used = await self.tokens.use(token_hash, TokenPurpose.RESET_PASSWORD, now)
            user = await self.users.get(used.user_id) if used is not None else None
            if used is None or user is None or user.email != used.email:
                raise InvalidToken(INVALID_TOKEN)
            await self.users.set_password_hash(user.id, new_hash, now)
            # The link reached this address: it is verified now.
            await self.users.mark_email_verified(user.id, user.email, now)
            await self.tokens.revoke(
                user.id, (TokenPurpose.RESET_PASSWORD, TokenPurpose.CHANGE_EMAIL), now
            )
            await self.auth.end_sessions_of(user.id, reason="password reset")
            await self.mail.queue(mail_templates.password_was_reset(user.email, self.mail.branding))

    # --- a new address -------------------------------------------------------------------

    async def change_email(
        self, principal: Principal, *, new_email: object, password: object
    ) -> None:
        """Send a confirmation link to the new address and a notice to the current one.
        ``Conflict`` if another account has the new address."""
        try:
            new = Email(new_email)
        except ValidationFailed as exc:
            raise exc.renamed("new_email") from None
        user = await self.auth.confirm_password(principal, password)
        if new == user.email:
            raise ValidationFailed.single("new_email", "is the account's address already")
        # Each request mails an address the caller names, or tells whether an account
        # has it: a bound on both.
        await self._limit(
            f"email-change:{user.id}",
            self.policy.email_changes_per_user,
            self.policy.email_change_window,
            "too many address changes asked for; check the new address's inbox, or try again later",
        )
        if await self.users.get_by_email(new.canonical) is not None:
            raise Conflict("an account with this email already exists")
        async with self.uow.atomic():
            await self.tokens.revoke(user.id, (TokenPurpose.CHANGE_EMAIL,), self.clock.now())
            token = await self.mail.issue(user.id, new, TokenPurpose.CHANGE_EMAIL)
            brand = self.mail.branding
            await self.mail.queue(mail_templates.confirm_new_email(new, user.email, brand, token))
            await self.mail.queue(mail_templates.email_change_notice(user.email, new, brand))

    async def confirm_email_change(self, token: object) -> User:
        """Make the link's address the account's (verified). ``Conflict`` if another
        account took it meanwhile; every other link of the account stops working."""
        token_hash = link_token_hash(token)
        now = self.clock.now()
        async with self.uow.atomic():
            used = await self.tokens.use(token_hash, TokenPurpose.CHANGE_EMAIL, now)
            if used is None or not await self.users.change_email(used.user_id, used.email, now):
                raise InvalidToken(INVALID_TOKEN)
            await self.tokens.revoke(used.user_id, _ALL_PURPOSES, now)
            user = await self.users.get(used.user_id)
            assert user is not None  # changed just now, in this transaction
            return user

    # --- internals -------------------------------------------------------------------

    async def _limit(self, key: str, limit: int, window: timedelta, message: str) -> None:
        decision = await self.limiter.hit(key, limit=limit, window=window.total_seconds())
        if not decision.allowed:
            raise RateLimited(message, retry_after=math.ceil(decision.retry_after))
