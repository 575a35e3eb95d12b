"""Operators' use cases: manage accounts by email, without the user's password."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from attrs import define

from engage_core.errors import NotFound, ValidationFailed
from engage_core.model import OPERATOR, ActivityKind, DeviceSession, Email, Password, User
from engage_core.ports import SessionRepository, UserRepository
from engage_core.services.auth import AuthService
from engage_core.services.mfa import MfaService

__all__ = [
    "AccountAdmin",
]


@define
class AccountAdmin:
    """What ``engage user ...`` does. Validation is the API's, through ``AuthService``."""

    auth: AuthService
    mfa: MfaService | None = None

    @property
    def users(self) -> UserRepository:
        return self.auth.users

    @property
    def sessions(self) -> SessionRepository:
        return self.auth.sessions

    async def create_user(self, *, email: object, password: object) -> User:
        return await self.auth.sign_up(email=email, password=password)

    async def find(self, email: object) -> User:
        """The user with this email (any letter case), or ``NotFound``."""
        parsed = Email(email)
        user = await self.users.get_by_email(parsed.canonical)
        if user is None:
            raise NotFound(f"no user with email {parsed.value}")
        return user

    async def list_users(
        self, *, after_email: str | None = None, limit: int = 100
    ) -> Sequence[User]:
        return await self.users.list(after_email=after_email, limit=limit)

    async def delete_user(self, email: object) -> User:
        """Delete the user and all their data; their sessions end at once."""
        user = await self.find(email)
        async with self.auth.uow.atomic():
            await self.auth.remove(user, reason="deleted by an operator")
        return user

    async def set_password(self, email: object, password: object) -> User:
        """Replace the password; every session of the user ends."""
        try:
            new = Password(password)
        except ValidationFailed as exc:
            raise exc.renamed("password") from None
        user = await self.find(email)
        new_hash = await self.auth.hasher.hash(new)
        now = self.auth.clock.now()
        async with self.auth.uow.atomic():
            await self.users.set_password_hash(user.id, new_hash, now)
            await self.auth.end_sessions_of(user.id, reason="password set by an operator")
            await self._record(ActivityKind.PASSWORD_RESET, user)
        return attrs.evolve(user, updated_at=now)

    async def unlock(self, email: object) -> User:
        """Clear the failed-login lock of an account's email."""
        user = await self.find(email)
        await self.auth.unlock(user.email)
        await self._record(ActivityKind.LOGIN_UNLOCKED, user)
        return user

    async def has_second_factor(self, email: object) -> tuple[User, bool]:
        """The user, and whether their second factor is on."""
        user = await self.find(email)
        return user, self.mfa is not None and await self.mfa.verifier.is_on(user.id)

    async def reset_second_factor(self, email: object) -> tuple[User, bool]:
        """Turn the user's second factor off (recorded in their activity); whether it was on."""
        user = await self.find(email)
        if self.mfa is None:
            return user, False
        return user, await self.mfa.reset(user)

    async def sessions_of(self, email: object) -> tuple[User, list[DeviceSession]]:
        user = await self.find(email)
        return user, await self.sessions.live_devices(user.id, self.auth.clock.now())

    async def log_out_everywhere(self, email: object) -> tuple[User, int]:
        """End every session of the user at once; how many devices were signed in."""
        user = await self.find(email)
        devices = await self.sessions.live_devices(user.id, self.auth.clock.now())
        async with self.auth.uow.atomic():
            await self.auth.end_sessions_of(user.id, reason="logged out by an operator")
            await self._record(ActivityKind.LOGOUT, user)
        return user, len(devices)

    async def _record(self, kind: ActivityKind, user: User) -> None:
        if self.auth.activity is not None:
            await self.auth.activity.record(kind, client=OPERATOR, user=user)
