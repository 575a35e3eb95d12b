"""Users stored for a test that needs one to exist, not one who can log in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID, uuid4

from engage_core.model import Email, User
from engage_core.ports import Clock, UserRepository

NewUser = Callable[[], Awaitable[UUID]]


def adding_users(users: UserRepository, clock: Clock) -> NewUser:
    """Stores a bare user (a password hash that matches nothing) and answers their
    id: what owns metrics, sessions and keys, which are refused for a user who does
    not exist."""

    async def new_user() -> UUID:
        user_id = uuid4()
        await users.add(
            User(
                id=user_id,
                email=Email(f"{user_id.hex}@example.com"),
                password_hash="unused",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
        return user_id

    return new_user
