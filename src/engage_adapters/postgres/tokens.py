"""One-time tokens of links in PostgreSQL, stored as SHA-256 hashes only.

Using one is one UPDATE ... WHERE used_at IS NULL RETURNING: of two requests
racing with the same token, exactly one gets it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from engage_adapters.postgres.transaction import connection
from engage_core.model import Email, OneTimeToken, TokenPurpose

_COLUMNS = "token_hash, purpose, user_id, email, created_at, expires_at, used_at"


def _token(row: tuple[Any, ...]) -> OneTimeToken:
    return OneTimeToken(
        token_hash=row[0],
        purpose=TokenPurpose(row[1]),
        user_id=row[2],
        email=Email(row[3]),
        created_at=row[4],
        expires_at=row[5],
        used_at=row[6],
    )


class PostgresOneTimeTokenRepository:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def add(self, token: OneTimeToken) -> None:
        async with connection(self._pool) as conn:
            await conn.execute(
                f"INSERT INTO one_time_tokens ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    token.token_hash,
                    token.purpose.value,
                    token.user_id,
                    token.email.value,
                    token.created_at,
                    token.expires_at,
                    token.used_at,
                ],
            )

    async def find(
        self, token_hash: str, purpose: TokenPurpose, at: datetime
    ) -> OneTimeToken | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM one_time_tokens WHERE token_hash = %s AND purpose = %s"
                " AND used_at IS NULL AND expires_at > %s",
                [token_hash, purpose.value, at],
            )
            row = await cur.fetchone()
        return _token(row) if row else None

    async def use(
        self, token_hash: str, purpose: TokenPurpose, at: datetime
    ) -> OneTimeToken | None:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                f"UPDATE one_time_tokens SET used_at = %s WHERE token_hash = %s AND purpose = %s"
                f" AND used_at IS NULL AND expires_at > %s RETURNING {_COLUMNS}",
                [at, token_hash, purpose.value, at],
            )
            row = await cur.fetchone()
        return _token(row) if row else None

    async def revoke(self, user_id: UUID, purposes: Collection[TokenPurpose], at: datetime) -> int:
        async with connection(self._pool) as conn:
            cur = await conn.execute(
                "UPDATE one_time_tokens SET used_at = %s"
                " WHERE user_id = %s AND used_at IS NULL AND purpose = ANY(%s)",
                [at, user_id, [p.value for p in purposes]],
            )
            return cur.rowcount
