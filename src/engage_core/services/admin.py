"""Operators' use cases: manage accounts by email, without the user's password."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from attrs import define

from engage_core.errors import FieldError, NotFound, ValidationFailed
from engage_core.model import Email, Password, User
from engage_core.ports import SessionRepository, UserRepository
from engage_core.services.auth import AuthService


@define
class AccountAdmin:
    """What ``engage user ...`` does. Validation is the API's, through ``AuthService``."""

    auth: AuthService

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
            await self.auth.end_sessions_of(user.id, reason="deleted by an operator")
            await self.users.delete(user.id)
        return user

    async def set_password(self, email: object, password: object) -> User:
        """Replace the password; every session of the user ends."""
        try:
            new = Password(password)
        except ValidationFailed as exc:
            raise ValidationFailed(FieldError("password", e.message) for e in exc.errors) from None
        user = await self.find(email)
        new_hash = await self.auth.hasher.hash(new)
        now = self.auth.clock.now()
        async with self.auth.uow.atomic():
            await self.users.set_password_hash(user.id, new_hash, now)
            await self.auth.end_sessions_of(user.id, reason="password set by an operator")
        return attrs.evolve(user, updated_at=now)
