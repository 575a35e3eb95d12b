"""Users in PostgreSQL, one statement per operation: in autocommit, or in the
unit of work in progress (``engage_adapters.postgres.transaction``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import connection
from engage_core.errors import Conflict
from engage_core.model import Email, User

_COLUMNS = "id, email, password_hash, created_at, updated_at, email_verified"


def _user(row: tuple[Any, ...]) -> User:
    return User(
        id=row[0],
        email=Email(row[1]),
        password_hash=row[2],
        created_at=row[3],
        updated_at=row[4],
        email_verified=row[5],
    )


class PostgresUserRepository:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def add(self, user: User) -> None:
        try:
            async with connection(self._pool) as conn:
                await conn.execute(
                    "INSERT INTO users"
                    " (id, email, email_key, password_hash, created_at, updated_at,"
                    " email_verified) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        user.id,
                        user.email.value,
                        user.email.canonical,
                        user.password_hash,
                        user.created_at,
                        user.updated_at,
                        user.email_verified,
                    ],
                )
        except psycopg.errors.UniqueViolation:
            raise Conflict("an account with this email already exists") from None

    async def get(self, user_id: UUID) -> User | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM users WHERE id = %s", [user_id])
            row = await cur.fetchone()
        return _user(row) if row else None

    async def get_by_email(self, canonical_email: str) -> User | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM users WHERE email_key = %s", [canonical_email.lower()]
            )
            row = await cur.fetchone()
        return _user(row) if row else None

    async def set_password_hash(
        self, user_id: UUID, password_hash: str, at: datetime, *, replacing: str | None = None
    ) -> bool:
        # A concurrent change commits first and this UPDATE, having waited for its
        # row lock, checks ``replacing`` against the hash that change stored.
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "UPDATE users SET password_hash = %s, updated_at = %s"
                " WHERE id = %s AND (%s::text IS NULL OR password_hash = %s::text)",
                [password_hash, at, user_id, replacing, replacing],
            )
            return cur.rowcount == 1

    async def hold_password(self, user_id: UUID, password_hash: str) -> bool:
        # FOR SHARE: a password change's UPDATE of the row waits until this unit of
        # work ends; one that committed first makes the hash differ here.
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "SELECT FROM users WHERE id = %s AND password_hash = %s FOR SHARE",
                [user_id, password_hash],
            )
            return cur.rowcount == 1

    async def delete(self, user_id: UUID) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute("DELETE FROM users WHERE id = %s", [user_id])
            return cur.rowcount == 1

    async def list(self, *, after_email: str | None = None, limit: int = 100) -> Sequence[User]:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM users WHERE email_key > %s ORDER BY email_key LIMIT %s",
                [(after_email or "").lower(), limit],
            )
            return [_user(row) for row in await cur.fetchall()]

    async def mark_email_verified(self, user_id: UUID, email: Email, at: datetime) -> bool:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "UPDATE users SET email_verified = true, updated_at = %s"
                " WHERE id = %s AND email_key = %s",
                [at, user_id, email.canonical],
            )
            return cur.rowcount == 1

    async def change_email(self, user_id: UUID, email: Email, at: datetime) -> bool:
        try:
            async with connection(self._pool) as conn:
                cur = await conn.execute(
                    "UPDATE users SET email = %s, email_key = %s, email_verified = true,"
                    " updated_at = %s WHERE id = %s",
                    [email.value, email.canonical, at, user_id],
                )
                return cur.rowcount == 1
        except psycopg.errors.UniqueViolation:
            raise Conflict("an account with this email already exists") from None
