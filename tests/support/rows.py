"""Rows written straight into the database, for tests of the schema itself."""

from __future__ import annotations

import uuid

from psycopg_pool import AsyncConnectionPool


async def insert_users(pool: AsyncConnectionPool, count: int) -> list[uuid.UUID]:
    """``count`` users (email ``<id>@x.test``, a placeholder hash); their ids."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO users (id, email, email_key, password_hash)"
            " SELECT id, id::text || '@x.test', id::text || '@x.test', 'h'"
            " FROM unnest(%s::uuid[]) id",
            [ids],
        )
    return ids
